"""The one way tests build the app under test: any set of plugins, in direct or remote mode, in-process or served.

`deploy(database_url, mode=..., plugins=...)` opens a `Deployment`. Direct: one app with the plugins in-process.
Remote: a serving app with the plugins direct, under uvicorn on 127.0.0.1, and a front app (the one the test
talks to) that runs the same plugins remote and calls the serving one through the service client, on the same
database. `served="loop"` puts the front on a real loopback socket too (streaming, SDKs), on the test's event loop.

The `deploy` fixture (tests/conftest.py) binds the test's database and `mode`, so a test module runs every test
body in both modes by asking for it; per-module defaults come from the `deploy_*` fixtures.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.routing import BaseRoute

from app.main import create_app
from app.plugin_kit import LocalDescription, PluginInfo, PluginService, Readiness
from app.plugins import Plugin, PluginContext, ServiceKey, Services
from app.settings import Settings
from tests.lifespan import lifespan

S = TypeVar("S")
Mode = Literal["direct", "remote"]
Served = Literal["no", "loop"]
ADMIN_KEY = "test-admin-key-0123456789"
INTERNAL_SECRET = "test-internal-secret-0123456789"


def make_settings(database_url: str, **env: str) -> Settings:
    # No job worker unless a test asks for one (FAAS_JOBS_WORKER=on): rag and ml declare job kinds, so otherwise
    # every app of the suite would start one, and on a loaded machine some of those never finished stopping (an
    # idle event loop at teardown, not reproduced alone; see the closing note). Tests of jobs turn it on.
    base = {
        "DATABASE_URL": database_url,
        "FAAS_ADMIN_KEY": ADMIN_KEY,
        "FAAS_ACCESS_LOG": "off",
        "FAAS_JOBS_WORKER": "off",
    }
    base.update(env)
    return Settings.from_env(base)


def asgi_client(app: Any, **headers: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver", headers=headers)


@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    api_key: str
    name: str

    @property
    def auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.api_key}"}


@dataclass
class Deployment:
    """The app under test. `app`/`state` are the front's (what clients reach); `serving_state` is where the plugins
    run direct (the same app in direct mode, the serving app in remote mode)."""

    mode: Mode
    app: Any  # the front's ASGI app (with its lifespan state attached when called in-process)
    state: dict[str, Any]
    serving_state: dict[str, Any]
    url: str | None = None  # the front's base URL when served
    serving_url: str | None = None  # the serving app's URL in remote mode
    _clients: list[httpx.AsyncClient] = field(default_factory=list)

    @property
    def services(self) -> Services:
        """The registry as the front's plugins see it (remote implementations in remote mode)."""
        services: Services = self.state["services"]
        return services

    def service(self, key: ServiceKey[S]) -> S:
        return self.services.get(key)

    def direct_service(self, key: ServiceKey[S]) -> S:
        """The direct implementation, wherever it runs (for tests that inspect it)."""
        services: Services = self.serving_state["services"]
        return services.get(key)

    def client(self, key: str | None = None, **headers: str) -> httpx.AsyncClient:
        """An async client of the front (closed with the deployment); `key` is sent as the bearer token."""
        if key is not None:
            headers["authorization"] = f"Bearer {key}"
        c = httpx.AsyncClient(base_url=self.url, headers=headers) if self.url else asgi_client(self.app, **headers)
        self._clients.append(c)
        return c

    def admin(self) -> httpx.AsyncClient:
        return self.client(ADMIN_KEY)

    async def tenant(self, name: str | None = None) -> Tenant:
        r = await self.admin().post("/api/v1/admin/tenants", json={"name": name or "t-" + secrets.token_hex(4)})
        assert r.status_code == 201, r.text
        data = r.json()
        return Tenant(tenant_id=data["tenant_id"], api_key=data["api_key"], name=data["name"])

    async def api(self, name: str | None = None) -> tuple[Tenant, httpx.AsyncClient]:
        """A new tenant and a client authenticated as it."""
        t = await self.tenant(name)
        return t, self.client(t.api_key)


class _Bare:
    def __init__(self, about: LocalDescription) -> None:
        self._about = about

    async def describe(self) -> PluginInfo:
        return self._about.info()

    async def ready(self) -> Readiness:
        return {"ok": True}


def bare_plugin(
    name: str, routes: Callable[[], Sequence[BaseRoute]] = lambda: (), *, requires: tuple[str, ...] = ()
) -> Plugin[PluginService]:
    """A test plugin whose service only describes itself: for routes that exercise the core."""

    @asynccontextmanager
    async def open_direct(ctx: PluginContext) -> AsyncIterator[_Bare]:
        yield _Bare(LocalDescription(ctx, ()))

    return Plugin(key=ServiceKey(name), direct=open_direct, routes=routes, requires=requires)


def remote_env(names: Sequence[str], url: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for name in names:
        env[f"FAAS_{name.upper()}_MODE"] = "remote"
        env[f"FAAS_{name.upper()}_URL"] = url
    return env


@asynccontextmanager
async def serve_app(application: Any, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """Serve an ASGI app (lifespan included) with uvicorn on a free loopback port of this event loop; yield its URL."""
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


async def _open(stack: AsyncExitStack, app: Starlette, served: Served) -> tuple[Any, dict[str, Any], str | None]:
    """Run `app` as asked: the ASGI app to call (lifespan state attached), its state, and its URL when served."""
    if served == "no":
        manager = await stack.enter_async_context(lifespan(app))
        return manager.app, app.state.lifespan, None
    url = await stack.enter_async_context(serve_app(app))
    return app, app.state.lifespan, url


@asynccontextmanager
async def deploy(
    database_url: str,
    *,
    mode: Mode,
    plugins: Sequence[str],
    remote: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    extra: Sequence[Plugin[Any]] = (),
    served: Served = "no",
) -> AsyncIterator[Deployment]:
    """Open the app under test (see the module docstring). `remote` narrows which of `plugins` run remote in
    remote mode (default: all); `extra` are plugin objects added to the installed ones (test plugins)."""
    from app.plugins import discover

    available = [*discover(), *extra] if extra else None
    env = {"FAAS_PLUGINS": ",".join(plugins), **(env or {})}
    async with AsyncExitStack() as stack:
        if mode == "direct":
            app, state, url = await _open(
                stack, create_app(make_settings(database_url, **env), plugins=available), served
            )
            deployment = Deployment(mode, app, state, state, url=url)
        else:
            env = {"FAAS_INTERNAL_SECRET": INTERNAL_SECRET, **env}
            serving = create_app(make_settings(database_url, **env), plugins=available)
            # The serving app always listens on a socket: that is the hop remote mode is about.
            _, serving_state, serving_url = await _open(stack, serving, "loop")
            assert serving_url is not None
            front_env = {**env, **remote_env(plugins if remote is None else remote, serving_url)}
            front = create_app(make_settings(database_url, **front_env), plugins=available)
            app, state, url = await _open(stack, front, served)
            deployment = Deployment(mode, app, state, serving_state, url=url, serving_url=serving_url)
        try:
            yield deployment
        finally:
            # The apps stop first (a served one lets requests in flight finish), then the test's clients close.
            await stack.aclose()
            for c in deployment._clients:
                await c.aclose()
