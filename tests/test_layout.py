"""Every plugin has one shape (DESIGN.md "One plugin, one shape"), and nothing crosses a plugin's boundary but its
interface: a plugin that departs from the template, imports another plugin's internals, or has an interface
method no route serves (or a route no remote method calls) fails here.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from app.config import SettingsGroup
from app.errors import ServiceError
from app.plugin_kit import PluginService
from app.plugins import Plugin, ServiceKey, discover
from app.routing import ApiRoute, mount
from app.settings import BUILTIN_PLUGINS

ROOT = Path(__file__).resolve().parent.parent
REQUIRED = ("__init__.py", "interface.py", "schemas.py", "api.py", "service.py", "remote.py")
# Methods every service has that no plugin route serves: readiness is /health/ready's probe of the deployment.
UNROUTED = {"ready"}


def class_name(plugin: str) -> str:
    return plugin.capitalize()


def module(plugin: str, name: str) -> ModuleType:
    return importlib.import_module(f"plugins.{plugin}.{name}")


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in the file, at any depth (a function-level import counts), except those
    under `if TYPE_CHECKING:`, which are for types only."""
    tree = ast.parse(path.read_text())
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # `from plugins.x import y` imports the module plugins.x.y when there is one
            for alias in node.names:
                sub = ROOT.joinpath(*node.module.split("."), alias.name)
                if sub.with_suffix(".py").is_file() or (sub / "__init__.py").is_file():
                    found.append((node.lineno, f"{node.module}.{alias.name}"))
    return found


def interface_methods(protocol: type) -> set[str]:
    names: set[str] = set()
    for klass in protocol.__mro__:
        if klass is object or not getattr(klass, "_is_protocol", False):
            continue
        names |= {n for n, v in vars(klass).items() if not n.startswith("_") and inspect.isfunction(v)}
    return names


@pytest.mark.parametrize("name", BUILTIN_PLUGINS)
def test_every_plugin_has_the_template_files_with_their_roles(name: str) -> None:
    folder = ROOT / "plugins" / name
    missing = [f for f in REQUIRED if not (folder / f).is_file()]
    assert not missing, f"plugins/{name} lacks {missing} (see DESIGN.md, 'One plugin, one shape')"
    cls, key_name = class_name(name), name.upper()
    interface, service, remote, api = (module(name, m) for m in ("interface", "service", "remote", "api"))
    plugin = importlib.import_module(f"plugins.{name}").plugin

    assert isinstance(plugin, Plugin) and plugin.name == name
    protocol = getattr(interface, f"{cls}Service")
    assert getattr(protocol, "_is_protocol", False) and PluginService in protocol.__mro__
    assert protocol.__doc__ or all(getattr(protocol, m).__doc__ for m in interface_methods(protocol) - {"ready"})
    key = getattr(interface, key_name)
    assert isinstance(key, ServiceKey) and plugin.key is key
    assert inspect.isclass(getattr(service, f"Direct{cls}Service"))
    assert plugin.direct is service.open_direct, "the direct factory is service.open_direct"
    assert inspect.isclass(getattr(remote, f"Remote{cls}Service"))
    assert plugin.remote is remote.open_remote, "the remote factory is remote.open_remote"
    assert plugin.routes is api.routes, "the routes come from api.routes"

    if (folder / "config.py").is_file():
        config = getattr(module(name, "config"), f"{cls}Config")
        assert issubclass(config, SettingsGroup) and config.group == name and plugin.config is config
    else:
        assert plugin.config is None
    if (folder / "store.py").is_file():
        assert inspect.isclass(getattr(module(name, "store"), f"{cls}Store"))
    if (folder / "errors.py").is_file():
        errors = module(name, "errors")
        own = [v for v in vars(errors).values() if inspect.isclass(v) and v.__module__ == errors.__name__]
        assert own and all(issubclass(e, ServiceError) for e in own)
    for dep in (*plugin.requires, *plugin.uses):
        assert dep in BUILTIN_PLUGINS and dep != name, f"{name} depends on unknown plugin {dep!r}"


@pytest.mark.parametrize("name", BUILTIN_PLUGINS)
def test_a_plugin_imports_no_other_plugin_but_its_interface(name: str) -> None:
    bad = []
    for path in sorted((ROOT / "plugins" / name).rglob("*.py")):
        for line, mod in imported_modules(path):
            parts = mod.split(".")
            if parts[0] == "plugins" and len(parts) > 1 and parts[1] != name and parts[1] in BUILTIN_PLUGINS:
                if parts[2:] not in ([], ["interface"]) and mod != f"plugins.{parts[1]}.interface":
                    bad.append(f"{path.relative_to(ROOT)}:{line} imports {mod}")
                elif parts[2:] == []:
                    bad.append(f"{path.relative_to(ROOT)}:{line} imports the package {mod}")
    assert not bad, "only another plugin's interface module may be imported:\n" + "\n".join(bad)


@pytest.mark.parametrize("name", BUILTIN_PLUGINS)
def test_an_interface_module_is_only_types(name: str) -> None:
    # Other plugins import it: it may use the core and its own schemas, never its own implementation.
    path = ROOT / "plugins" / name / "interface.py"
    own = {f"plugins.{name}.{m}" for m in ("schemas",)} | {f"plugins.{name}"}
    for line, mod in imported_modules(path):
        if mod.startswith("plugins."):
            assert any(mod == o or mod.startswith(o + ".") for o in own), f"interface.py:{line} imports {mod}"


def test_the_core_imports_no_plugin() -> None:
    bad = [
        f"{path.relative_to(ROOT)}:{line} imports {mod}"
        for path in sorted((ROOT / "app").rglob("*.py"))
        for line, mod in imported_modules(path)
        if mod == "plugins" or mod.startswith("plugins.")
    ]
    assert not bad, bad


def test_the_core_has_no_import_cycle() -> None:
    graph: dict[str, set[str]] = {}
    for path in (ROOT / "app").rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        graph[name] = {m for _, m in imported_modules(path) if m.startswith("app.") and m != name}
    for start in graph:
        stack: list[tuple[str, tuple[str, ...]]] = [(start, (start,))]
        seen: set[str] = set()
        while stack:
            node, chain = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    raise AssertionError("import cycle: " + " -> ".join((*chain, nxt)))
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, (*chain, nxt)))


def plugin_routes(plugin: Plugin[Any]) -> list[ApiRoute]:
    return mount(f"/api/v1/{plugin.name}", plugin.name, plugin.routes()) + mount("", plugin.name, plugin.root_routes())


@pytest.mark.parametrize("name", BUILTIN_PLUGINS)
def test_every_interface_method_has_a_route_and_every_route_a_remote_method(name: str) -> None:
    plugin = next(p for p in discover() if p.name == name)
    protocol = getattr(module(name, "interface"), f"{class_name(name)}Service")
    remote_class = getattr(module(name, "remote"), f"Remote{class_name(name)}Service")
    methods = interface_methods(protocol) - UNROUTED
    served = {m for r in plugin_routes(plugin) for m in r.operation.serves}
    assert methods - served == set(), f"interface methods without a route: {sorted(methods - served)}"
    assert served - methods == set(), f"routes serving no interface method: {sorted(served - methods)}"
    # Implemented by the class or its RemoteService base, never left to the Protocol's `...` bodies.
    own = {n for klass in remote_class.__mro__[:-1] for n, v in vars(klass).items() if inspect.isfunction(v)}
    assert served - own == set(), f"routes without a method of Remote{class_name(name)}Service: {served - own}"


def test_operation_ids_are_namespaced_and_unique() -> None:
    from app.main import build_routes
    from app.plugins import resolve
    from app.settings import Settings

    routes = [r for r in build_routes(resolve(Settings.from_env({}), discover())) if isinstance(r, ApiRoute)]
    names = [r.name for r in routes]
    assert len(names) == len(set(names))
    for r in routes:
        namespace = r.name.split(".")[0]
        assert namespace in {*BUILTIN_PLUGINS, "health", "admin", "jobs"}, r.name
        if r.path.startswith("/api/v1/") and namespace in BUILTIN_PLUGINS:
            assert r.path.startswith(f"/api/v1/{namespace}"), (r.name, r.path)
