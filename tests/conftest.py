"""Test fixtures: a real PostgreSQL (embedded, or TEST_DATABASE_URL), a fresh database per test cloned from a
migrated template, and the app under test built by the one harness (tests/harness.py) in the test's `mode`.

A module chooses what it deploys with the `deploy_*` fixtures (plugins, env, served) and whether it runs in both
modes (`mode` is direct and remote here; tests/app/conftest.py narrows it to direct for the core's own tests).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from app import migrations
from app.db import plain_url, start_embedded, stop_embedded
from app.plugins import Plugin
from app.settings import BUILTIN_PLUGINS, Settings
from tests.harness import (
    ADMIN_KEY,
    INTERNAL_SECRET,
    Deployment,
    Mode,
    Served,
    Tenant,
    asgi_client,
    deploy,
    make_settings,
    remote_env,
    serve_app,
)

__all__ = ["ADMIN_KEY", "INTERNAL_SECRET", "asgi_client", "make_settings", "remote_env", "serve_app"]

T = TypeVar("T")
TEMPLATE = "faas_test_template"


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> None:
    """Run every `async def` test on anyio (marked before anyio's own collection hook looks)."""
    if name.startswith("test") and asyncio.iscoroutinefunction(obj):
        pytest.mark.anyio(obj)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


def with_database(url: str, name: str) -> str:
    parts = urlsplit(plain_url(url))
    return urlunsplit(parts._replace(path="/" + name))


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """URL of the PostgreSQL server (its maintenance database) the whole session uses."""
    given = os.environ.get("TEST_DATABASE_URL")
    if given:
        yield given
        return
    with tempfile.TemporaryDirectory(prefix="faas-test-pg-") as tmp:
        try:
            yield start_embedded(Path(tmp))
        finally:
            stop_embedded(Path(tmp))  # before the directory goes, or the server outlives the session


async def _admin(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(plain_url(url))
    try:
        for sql in statements:
            await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def template_url(server_url: str) -> str:
    asyncio.run(_admin(server_url, f"DROP DATABASE IF EXISTS {TEMPLATE}", f"CREATE DATABASE {TEMPLATE}"))
    url = with_database(server_url, TEMPLATE)
    migrations.upgrade(url)
    return url


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new database cloned from the migrated template, dropped afterwards."""
    name = "faas_t_" + secrets.token_hex(6)
    asyncio.run(_admin(server_url, f"CREATE DATABASE {name} TEMPLATE {TEMPLATE} STRATEGY FILE_COPY"))
    try:
        yield with_database(server_url, name)
    finally:
        asyncio.run(_admin(server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture
def database_url(server_url: str, template_url: str) -> Iterator[str]:
    """A fresh, migrated database for this test alone."""
    with fresh_database(server_url) as url:
        yield url


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


# --- The app under test: one harness, any plugin set, both modes -----------------------------------------------


@pytest.fixture(params=["direct", "remote"])
def mode(request: pytest.FixtureRequest) -> Mode:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def deploy_plugins() -> tuple[str, ...]:
    """Plugins the deployment mounts (a module or package overrides this)."""
    return BUILTIN_PLUGINS


@pytest.fixture
def deploy_remote() -> tuple[str, ...] | None:
    """Which of `deploy_plugins` run remote in remote mode (None: all of them)."""
    return None


@pytest.fixture
def deploy_env() -> dict[str, str]:
    """Extra environment for every app of the deployment."""
    return {}


@pytest.fixture
def deploy_extra() -> tuple[Plugin[Any], ...]:
    """Test plugins added to the installed ones."""
    return ()


@pytest.fixture
def deploy_served() -> Served:
    return "no"


class Deployer(Protocol):
    def __call__(
        self,
        *,
        plugins: tuple[str, ...] | None = ...,
        remote: tuple[str, ...] | None = ...,
        env: dict[str, str] | None = ...,
        extra: tuple[Plugin[Any], ...] | None = ...,
        served: Served | None = ...,
    ) -> AbstractAsyncContextManager[Deployment]: ...


@pytest.fixture
def deploy_app(
    database_url: str,
    mode: Mode,
    deploy_plugins: tuple[str, ...],
    deploy_remote: tuple[str, ...] | None,
    deploy_env: dict[str, str],
    deploy_extra: tuple[Plugin[Any], ...],
    deploy_served: Served,
) -> Deployer:
    """`async with deploy_app(**overrides) as d:` opens a deployment in this test's mode and database; each
    argument left out takes the module's `deploy_*` default (`env` is added to the default, not replacing it)."""

    def open_deployment(
        *,
        plugins: tuple[str, ...] | None = None,
        remote: tuple[str, ...] | None = None,
        env: dict[str, str] | None = None,
        extra: tuple[Plugin[Any], ...] | None = None,
        served: Served | None = None,
    ) -> AbstractAsyncContextManager[Deployment]:
        return deploy(
            database_url,
            mode=mode,
            plugins=deploy_plugins if plugins is None else plugins,
            remote=deploy_remote if remote is None else remote,
            env={**deploy_env, **(env or {})},
            extra=deploy_extra if extra is None else extra,
            served=deploy_served if served is None else served,
        )

    return open_deployment


@pytest.fixture
async def deployment(deploy_app: Deployer) -> AsyncIterator[Deployment]:
    async with deploy_app() as d:
        yield d


@pytest.fixture
def app(deployment: Deployment) -> Any:
    return deployment.app


@pytest.fixture
def client(deployment: Deployment) -> httpx.AsyncClient:
    """An unauthenticated client of the deployment."""
    return deployment.client()


@pytest.fixture
def admin(deployment: Deployment) -> httpx.AsyncClient:
    return deployment.admin()


@pytest.fixture
async def tenant(deployment: Deployment) -> Tenant:
    return await deployment.tenant()


@pytest.fixture
def api(deployment: Deployment, tenant: Tenant) -> httpx.AsyncClient:
    """A client authenticated as a fresh tenant."""
    return deployment.client(tenant.api_key)


@pytest.fixture
async def clients(deployment: Deployment) -> list[httpx.AsyncClient]:
    """Clients of two different tenants."""
    return [(await deployment.api())[1] for _ in range(2)]


async def new_tenant(admin: httpx.AsyncClient, name: str | None = None) -> dict[str, str]:
    r = await admin.post("/api/v1/admin/tenants", json={"name": name or "t-" + secrets.token_hex(4)})
    assert r.status_code == 201, r.text
    data: dict[str, str] = r.json()
    return data


async def eventually(check: Callable[[], Awaitable[T]], *, within: float = 10.0, interval: float = 0.05) -> T:
    """`await check()` until it stops raising AssertionError (for state written off the request path, such as
    the usage ledger's batched flush), or re-raise its last failure after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(interval)


@contextmanager
def captured_logs() -> Iterator[list[dict[str, Any]]]:
    """The `faas.*` log lines written meanwhile, as the JSON formatter writes them (with the request id and tenant
    of the request that wrote each: formatted when written, as in production)."""
    import json
    import logging

    from app.logs import JsonFormatter

    lines: list[dict[str, Any]] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(json.loads(JsonFormatter().format(record)))

    handler = Collect(logging.INFO)
    logger = logging.getLogger("faas")
    logger.addHandler(handler)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
