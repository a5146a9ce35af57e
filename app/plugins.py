"""The plugin contract and registry.

A plugin is a `Plugin` object published under the `faas.plugins` entry-point group; the seven built-ins are
registered there exactly as a third-party package would be. `resolve()` turns the settings into a `Layout`:
which plugins are mounted, each one's mode, and the order in which their services open. It fails loudly on
a duplicate name, an unknown plugin, a missing dependency or a remote plugin without a URL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from starlette.routing import BaseRoute

from app.settings import ConfigError, PluginSettings, Settings

if TYPE_CHECKING:
    from app.db import Database
    from app.http_client import ServiceClientManager
    from app.jobs import JobHandler, JobQueue
    from app.metrics import Metrics

ENTRY_POINT_GROUP = "faas.plugins"


class StartupError(Exception):
    """The app cannot start as configured; the message says what to change."""


class Services:
    """The registry plugins call each other through: `services.gateway.chat(...)`."""

    def __init__(self) -> None:
        self._services: dict[str, Any] = {}
        self.modes: dict[str, str] = {}

    def register(self, name: str, service: Any, mode: str) -> None:
        if name in self._services:
            raise StartupError(f"service {name!r} registered twice")
        self._services[name] = service
        self.modes[name] = mode

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._services[name]
        except KeyError:
            raise AttributeError(
                f"service {name!r} is not available here: mount it (FAAS_PLUGINS) or run it remote "
                f"(FAAS_{name.upper()}_MODE=remote, FAAS_{name.upper()}_URL)"
            ) from None

    def get(self, name: str) -> Any | None:
        return self._services.get(name)

    def items(self) -> Iterable[tuple[str, Any]]:
        return self._services.items()

    def __contains__(self, name: object) -> bool:
        return name in self._services


@dataclass
class PluginContext:
    """What a plugin's factory receives when the lifespan opens its service."""

    settings: Settings
    db: Database
    services: Services
    clients: ServiceClientManager
    metrics: Metrics
    config: PluginSettings
    # The job queue (enqueue, read, cancel). The lifespan and `faas worker` always set it; None only in a context
    # built by hand.
    jobs: JobQueue | None = None


ServiceFactory = Callable[[PluginContext], AbstractAsyncContextManager[Any]]


@dataclass(frozen=True)
class Plugin:
    """One service. `routes` mount under /api/v1/<name>; `root_routes` at their own absolute paths."""

    name: str
    direct: ServiceFactory
    remote: ServiceFactory | None = None
    requires: tuple[str, ...] = ()
    routes: Callable[[], Sequence[BaseRoute]] = lambda: ()
    root_routes: Callable[[], Sequence[BaseRoute]] = lambda: ()
    description: str = ""
    # Job kinds (`<plugin>.<name>`) -> handler; a worker runs them where the plugin runs direct (see app.jobs).
    jobs: Mapping[str, JobHandler] = field(default_factory=dict, hash=False)


def discover() -> list[Plugin]:
    """Every plugin published under the entry-point group, in a stable order."""
    found: list[Plugin] = []
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            obj = ep.load()
        except Exception as exc:
            raise StartupError(f"plugin entry point {ep.name!r} ({ep.value}) failed to import: {exc}") from exc
        if not isinstance(obj, Plugin):
            raise StartupError(f"entry point {ep.name!r} ({ep.value}) is not a faas Plugin object")
        if obj.name != ep.name:
            raise StartupError(f"entry point {ep.name!r} publishes a plugin named {obj.name!r}: the names must match")
        found.append(obj)
    return found


@dataclass(frozen=True)
class Layout:
    mounted: tuple[Plugin, ...]
    # Plugins whose service opens in this process, in dependency order (mounted or not: a remote dependency
    # of a mounted plugin opens as a client here without its routes being mounted).
    open_order: tuple[Plugin, ...]
    modes: dict[str, str] = field(default_factory=dict)


def resolve(settings: Settings, available: Sequence[Plugin]) -> Layout:
    by_name: dict[str, Plugin] = {}
    for plugin in available:
        if plugin.name in by_name:
            raise StartupError(f"two plugins are named {plugin.name!r}: uninstall one of them")
        by_name[plugin.name] = plugin
    for name in settings.plugins:
        if name not in by_name:
            raise ConfigError(
                f"FAAS_PLUGINS names {name!r}, which is not installed: choose from {', '.join(sorted(by_name))}"
            )
    for name in settings.plugin_settings:
        if name not in by_name:
            raise ConfigError(f"FAAS_{name.upper()}_MODE is set, but no plugin {name!r} is installed")
    modes = {name: settings.plugin(name).mode for name in by_name}
    for name, ps in settings.plugin_settings.items():
        if ps.mode == "remote" and by_name[name].remote is None:
            raise ConfigError(f"FAAS_{name.upper()}_MODE=remote, but plugin {name!r} has no remote implementation")

    needed: list[str] = []

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in chain:
            raise StartupError(f"plugin dependency cycle: {' -> '.join((*chain, name))}")
        if name in needed:
            return
        plugin = by_name[name]
        if modes[name] == "direct":
            for dep in plugin.requires:
                if dep not in by_name:
                    raise StartupError(f"plugin {name!r} requires {dep!r}, which is not installed")
                if dep not in settings.plugins and modes[dep] != "remote":
                    raise ConfigError(
                        f"plugin {name!r} requires {dep!r}: add {dep} to FAAS_PLUGINS, or set "
                        f"FAAS_{dep.upper()}_MODE=remote and FAAS_{dep.upper()}_URL"
                    )
                visit(dep, (*chain, name))
        needed.append(name)

    for name in settings.plugins:
        visit(name, ())
    return Layout(
        mounted=tuple(by_name[n] for n in settings.plugins),
        open_order=tuple(by_name[n] for n in needed),
        modes={n: modes[n] for n in needed},
    )
