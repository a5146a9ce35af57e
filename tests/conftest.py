"""Test fixtures: a real PostgreSQL (embedded, or TEST_DATABASE_URL), a fresh database per test cloned from a
migrated template, and the app driven in-process through httpx with its lifespan run.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager

from app import migrations
from app.db import plain_url, start_embedded, stop_embedded
from app.main import create_app
from app.settings import Settings

T = TypeVar("T")
ADMIN_KEY = "test-admin-key-0123456789"
INTERNAL_SECRET = "test-internal-secret-0123456789"
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


def make_settings(database_url: str, **env: str) -> Settings:
    base = {"DATABASE_URL": database_url, "FAAS_ADMIN_KEY": ADMIN_KEY, "FAAS_ACCESS_LOG": "off"}
    base.update(env)
    return Settings.from_env(base)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Any]:
    application = create_app(settings)
    async with LifespanManager(application) as manager:
        yield manager.app


def asgi_client(app: Any, **headers: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver", headers=headers)


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(app) as c:
        yield c


@pytest.fixture
async def admin(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(app, authorization=f"Bearer {ADMIN_KEY}") as c:
        yield c


async def new_tenant(admin: httpx.AsyncClient, name: str | None = None) -> dict[str, str]:
    r = await admin.post("/api/v1/admin/tenants", json={"name": name or "t-" + secrets.token_hex(4)})
    assert r.status_code == 201, r.text
    data: dict[str, str] = r.json()
    return data


@pytest.fixture
async def tenant(admin: httpx.AsyncClient) -> dict[str, str]:
    return await new_tenant(admin)


@pytest.fixture
async def api(app: Any, tenant: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    """A client authenticated as a fresh tenant."""
    async with asgi_client(app, authorization=f"Bearer {tenant['api_key']}") as c:
        yield c


# --- Remote mode: serve an app on loopback, and the `mode` fixture (direct | remote) for parity tests ---------
# A test module parametrizes its service tests over both modes by using `mode_api` (or `mode_app`) instead of
# `api` (or `app`). It may override `remote_plugins` (which plugins the front app runs remote; default all) and
# `mode_env` (extra environment for both apps). In remote mode the front app serves the routes and calls a second
# app instance, served by uvicorn on 127.0.0.1 against the same test database, through ServiceHTTPClient.

from contextlib import asynccontextmanager  # noqa: E402  (appended section: the header above is shared)


@asynccontextmanager
async def serve_app(application: Any, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """Serve an ASGI app (lifespan included) with uvicorn on a free loopback port of this event loop; yield its URL."""
    import socket

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(application, lifespan="on", log_config=None, access_log=False, ws="none")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                raise RuntimeError("the app failed to start under uvicorn (see the log above)")
            await asyncio.sleep(0.005)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@pytest.fixture(params=["direct", "remote"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def remote_plugins() -> tuple[str, ...]:
    """Plugins the front app runs remote when `mode` is remote (override in a module to narrow it)."""
    from app.settings import BUILTIN_PLUGINS

    return BUILTIN_PLUGINS


@pytest.fixture
def mode_env() -> dict[str, str]:
    """Extra environment for both app instances (override in a module)."""
    return {}


def remote_env(names: tuple[str, ...], url: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for name in names:
        env[f"FAAS_{name.upper()}_MODE"] = "remote"
        env[f"FAAS_{name.upper()}_URL"] = url
    return env


@pytest.fixture
async def mode_app(
    mode: str, database_url: str, remote_plugins: tuple[str, ...], mode_env: dict[str, str]
) -> AsyncIterator[Any]:
    """The app tests talk to: everything direct, or `remote_plugins` served by a second app instance."""
    env = {"FAAS_INTERNAL_SECRET": INTERNAL_SECRET, **mode_env}
    if mode == "direct":
        async with LifespanManager(create_app(make_settings(database_url, **env))) as manager:
            yield manager.app
        return
    async with serve_app(create_app(make_settings(database_url, **env))) as url:
        front = create_app(make_settings(database_url, **env, **remote_env(remote_plugins, url)))
        async with LifespanManager(front) as manager:
            yield manager.app


@pytest.fixture
async def mode_admin(mode_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(mode_app, authorization=f"Bearer {ADMIN_KEY}") as c:
        yield c


@pytest.fixture
async def mode_tenant(mode_admin: httpx.AsyncClient) -> dict[str, str]:
    return await new_tenant(mode_admin)


@pytest.fixture
async def mode_api(mode_app: Any, mode_tenant: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    """A client of `mode_app` authenticated as a fresh tenant (the same tenant on both app instances)."""
    async with asgi_client(mode_app, authorization=f"Bearer {mode_tenant['api_key']}") as c:
        yield c


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
