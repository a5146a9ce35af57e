"""The plugin registry: discovery through entry points, dependency order, and loud start-up failures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from starlette.requests import Request
from starlette.responses import Response

from app.main import create_app
from app.plugins import Plugin, PluginContext, ServiceKey, StartupError, discover, resolve, service
from app.routing import api_route, json_response
from app.settings import BUILTIN_PLUGINS, ConfigError, Settings
from tests.conftest import asgi_client, make_settings, new_tenant
from tests.harness import Deployment, deploy
from tests.lifespan import lifespan


@asynccontextmanager
async def _service(ctx: PluginContext) -> AsyncIterator[dict[str, str]]:
    yield {"plugin": ctx.plugin.name}


def fake(name: str, *requires: str, remote: bool = False, uses: tuple[str, ...] = ()) -> Plugin[dict[str, str]]:
    key: ServiceKey[dict[str, str]] = ServiceKey(name)
    return Plugin(key=key, requires=requires, uses=uses, direct=_service, remote=_service if remote else None)


def test_the_seven_builtins_come_from_entry_points() -> None:
    names = [p.name for p in discover()]
    assert sorted(names) == sorted(BUILTIN_PLUGINS)


def test_dependencies_open_first() -> None:
    layout = resolve(Settings.from_env({}), discover())
    order = [p.name for p in layout.open_order]
    for plugin in layout.open_order:
        for dep in plugin.requires:
            assert order.index(dep) < order.index(plugin.name), (dep, plugin.name)


def test_duplicate_plugin_name_fails() -> None:
    with pytest.raises(StartupError, match="two plugins are named 'a'"):
        resolve(Settings.from_env({"FAAS_PLUGINS": "a"}), [fake("a"), fake("a")])


def test_unknown_plugin_in_faas_plugins_fails() -> None:
    with pytest.raises(ConfigError, match="FAAS_PLUGINS names 'nope'"):
        resolve(Settings.from_env({"FAAS_PLUGINS": "nope"}), [fake("a")])


def test_missing_dependency_fails_with_the_fix() -> None:
    with pytest.raises(ConfigError, match="add b to FAAS_PLUGINS, or set FAAS_B_MODE=remote"):
        resolve(Settings.from_env({"FAAS_PLUGINS": "a"}), [fake("a", "b"), fake("b")])


def test_remote_dependency_opens_without_being_mounted() -> None:
    env = {"FAAS_PLUGINS": "a", "FAAS_B_MODE": "remote", "FAAS_B_URL": "http://b:1", "FAAS_INTERNAL_SECRET": "s" * 20}
    layout = resolve(Settings.from_env(env), [fake("a", "b"), fake("b", remote=True)])
    assert [p.name for p in layout.mounted] == ["a"]
    assert [p.name for p in layout.open_order] == ["b", "a"] and layout.modes["b"] == "remote"


def test_remote_mode_without_remote_implementation_fails() -> None:
    env = {"FAAS_PLUGINS": "a", "FAAS_A_MODE": "remote", "FAAS_A_URL": "http://a:1", "FAAS_INTERNAL_SECRET": "s" * 20}
    with pytest.raises(ConfigError, match="no remote implementation"):
        resolve(Settings.from_env(env), [fake("a")])


def test_dependency_cycle_fails() -> None:
    with pytest.raises(StartupError, match="cycle"):
        resolve(Settings.from_env({"FAAS_PLUGINS": "a,b"}), [fake("a", "b"), fake("b", "a")])


def test_mode_for_an_uninstalled_plugin_fails() -> None:
    with pytest.raises(ConfigError, match="FAAS_ZZZ_MODE"):
        resolve(Settings.from_env({"FAAS_PLUGINS": "a", "FAAS_ZZZ_MODE": "direct"}), [fake("a")])


async def test_faas_plugins_selects_what_is_mounted(database_url: str) -> None:
    app = create_app(make_settings(database_url, FAAS_PLUGINS="prompts"))
    async with lifespan(app) as m, asgi_client(m.app) as c:
        doc = (await c.get("/openapi.json")).json()
    assert any(p.startswith("/api/v1/prompts") for p in doc["paths"])
    assert not any(p.startswith("/api/v1/rag") for p in doc["paths"])


async def test_a_third_party_plugin_mounts_like_a_builtin(database_url: str) -> None:
    hello_key: ServiceKey[dict[str, str]] = ServiceKey("hello")

    async def hello(request: Request) -> Response:
        return json_response({"hello": service(request, hello_key)["plugin"]})

    third = Plugin(key=hello_key, direct=_service, routes=lambda: [api_route("GET", "/greet", hello, "Greet")])
    app = create_app(make_settings(database_url, FAAS_PLUGINS="hello"), plugins=[*discover(), third])
    async with lifespan(app) as m, asgi_client(m.app) as c:
        assert (await c.get("/api/v1/hello/greet")).status_code == 401
        from tests.conftest import ADMIN_KEY

        c.headers["authorization"] = f"Bearer {ADMIN_KEY}"
        t = await new_tenant(c)
        r = await c.get("/api/v1/hello/greet", headers={"authorization": f"Bearer {t['api_key']}"})
    assert r.json() == {"hello": "hello"}


def test_an_optional_dependency_imposes_no_order_and_opens_here_when_remote() -> None:
    both = [fake("a", uses=("b",)), fake("b", uses=("a",), remote=True)]  # they use each other: no cycle
    layout = resolve(Settings.from_env({"FAAS_PLUGINS": "a,b"}), both)
    assert sorted(p.name for p in layout.open_order) == ["a", "b"]
    env = {"FAAS_PLUGINS": "a", "FAAS_B_MODE": "remote", "FAAS_B_URL": "http://b:1", "FAAS_INTERNAL_SECRET": "s" * 20}
    layout = resolve(Settings.from_env(env), both)
    assert [p.name for p in layout.mounted] == ["a"] and layout.modes == {"a": "direct", "b": "remote"}
    alone = resolve(Settings.from_env({"FAAS_PLUGINS": "a"}), both)
    assert [p.name for p in alone.open_order] == ["a"]  # not mounted, not remote: absent, and a runs without it


async def test_info_shows_how_each_optional_dependency_is_reached(database_url: str) -> None:
    async def uses(d: Deployment, plugin: str) -> dict[str, str]:
        _, c = await d.api()
        r = await c.get(f"/api/v1/{plugin}/-/info")
        assert r.status_code == 200, r.text
        found: dict[str, str] = r.json()["uses"]
        return found

    async with deploy(database_url, mode="direct", plugins=("gateway", "cache")) as d:
        assert await uses(d, "gateway") == {"cache": "direct"} and await uses(d, "cache") == {"gateway": "direct"}
    async with deploy(database_url, mode="direct", plugins=("gateway",)) as d:
        assert await uses(d, "gateway") == {"cache": "absent"}
    async with deploy(database_url, mode="remote", plugins=("gateway", "cache"), remote=("cache",)) as d:
        assert await uses(d, "gateway") == {"cache": "remote"}
