"""The plugin contract and registry.

A plugin is a `Plugin[S]` object published under the `faas.plugins` entry-point group; the seven built-ins are
registered there exactly as a third-party package would be. `S` is the plugin's service interface (a Protocol in
its interface.py); both factories produce an `S`, so mypy proves the direct and the remote implementation satisfy
the same contract. Another plugin reaches the service through the registry with the plugin's typed key
(`services.get(GATEWAY)` is a `GatewayService`), never by importing the plugin's internals.

`requires` are dependencies a plugin cannot run without: they open first, and start-up fails without them.
`uses` are optional: looked up at call time (`services.optional(CACHE)`), opened here when they run remote, and
reported by `/-/info`; the gateway and the cache use each other this way. `resolve()` turns the settings into a
`Layout` (what is mounted, each one's mode, the order services open in) and fails loudly on a duplicate name,
an unknown plugin, a missing dependency or a remote plugin without a URL.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from starlette.requests import Request
from starlette.routing import BaseRoute

from app.errors import Unavailable
from app.settings import ConfigError, PluginSettings, Settings

if TYPE_CHECKING:
    from app.config import SettingsGroup
    from app.db import Database
    from app.http_client import ServiceClientManager
    from app.jobs import JobHandler, JobQueue
    from app.metrics import Metrics

ENTRY_POINT_GROUP = "faas.plugins"
S = TypeVar("S")
log = logging.getLogger("faas.plugins")


class StartupError(Exception):
    """The app cannot start as configured; the message says what to change."""


class ServiceKey(Generic[S]):
    """The typed name of a plugin's service: `GATEWAY: ServiceKey[GatewayService] = ServiceKey("gateway")`.

    Declared in the plugin's interface.py, the one module other plugins may import; `services.get(GATEWAY)`
    is then typed as the interface, whichever implementation (direct or remote) opened here.
    """

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"ServiceKey({self.name!r})"


def _unavailable(name: str) -> Unavailable:
    return Unavailable(
        f"the {name} service is not available here: mount it (FAAS_PLUGINS) or run it remote "
        f"(FAAS_{name.upper()}_MODE=remote, FAAS_{name.upper()}_URL)"
    )


class Services:
    """The registry plugins call each other through: `services.get(GATEWAY).chat(...)`."""

    def __init__(self) -> None:
        self._services: dict[str, Any] = {}
        self.modes: dict[str, str] = {}

    def register(self, name: str, service: object, mode: str) -> None:
        if name in self._services:
            raise StartupError(f"service {name!r} registered twice")
        self._services[name] = service
        self.modes[name] = mode

    def get(self, key: ServiceKey[S]) -> S:
        """The service, or Unavailable (503) naming the setting that would provide it."""
        try:
            service: S = self._services[key.name]
        except KeyError:
            raise _unavailable(key.name) from None
        return service

    def optional(self, key: ServiceKey[S]) -> S | None:
        """The service when it is open here (direct or remote), else None: for a plugin's `uses`."""
        service: S | None = self._services.get(key.name)
        return service

    def items(self) -> Iterable[tuple[str, object]]:
        return self._services.items()

    def __contains__(self, name: object) -> bool:
        return name in self._services


def service(request: Request, key: ServiceKey[S]) -> S:
    """The service behind `key`, for an endpoint."""
    services: Services = request.state.services
    return services.get(key)


@dataclass
class PluginContext:
    """What a plugin's factory receives when the lifespan opens its service."""

    plugin: Plugin[Any]
    settings: Settings
    db: Database
    services: Services
    clients: ServiceClientManager
    metrics: Metrics
    jobs: JobQueue  # the durable job queue: enqueue, read, cancel (app.jobs)

    @property
    def config(self) -> PluginSettings:
        """This plugin's mode and URL (its own FAAS_<NAME>_* settings come from its config.py)."""
        return self.settings.plugin(self.plugin.name)

    def usage(self) -> dict[str, str]:
        """How each optional dependency is reached from here right now: direct, remote, or absent."""
        return {name: self.services.modes.get(name, "absent") for name in self.plugin.uses}


Factory = Callable[[PluginContext], AbstractAsyncContextManager[S]]


def _no_routes() -> Sequence[BaseRoute]:
    return ()


@dataclass(frozen=True)
class Plugin(Generic[S]):
    """One service. `routes` mount under /api/v1/<name>; `root_routes` at their own absolute paths."""

    key: ServiceKey[S]
    direct: Factory[S]
    remote: Factory[S] | None = None
    requires: tuple[str, ...] = ()
    uses: tuple[str, ...] = ()
    routes: Callable[[], Sequence[BaseRoute]] = _no_routes
    root_routes: Callable[[], Sequence[BaseRoute]] = _no_routes
    # Its FAAS_<NAME>_* settings (read by its open_direct; listed by `faas config`).
    config: type[SettingsGroup] | None = None
    description: str = ""
    # Job kinds (`<plugin>.<name>`) -> handler; a worker runs them where the plugin runs direct (see app.jobs).
    jobs: Mapping[str, JobHandler] = field(default_factory=dict, hash=False)

    @property
    def name(self) -> str:
        return self.key.name


def discover() -> list[Plugin[Any]]:
    """Every plugin published under the entry-point group, in a stable order."""
    found: list[Plugin[Any]] = []
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
    mounted: tuple[Plugin[Any], ...]
    # Plugins whose service opens in this process, in dependency order (mounted or not: a remote dependency
    # of a mounted plugin opens as a client here without its routes being mounted).
    open_order: tuple[Plugin[Any], ...]
    modes: dict[str, str] = field(default_factory=dict)


def resolve(settings: Settings, available: Sequence[Plugin[Any]]) -> Layout:
    by_name: dict[str, Plugin[Any]] = {}
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
    # Optional dependencies impose no order (they are looked up at call time, and may point both ways, as the
    # gateway and the cache do); one that runs remote opens here as a client.
    for name in list(needed):
        if modes[name] != "direct":
            continue
        for dep in by_name[name].uses:
            if dep in by_name and modes[dep] == "remote" and dep not in needed:
                needed.append(dep)
            elif dep not in needed:
                log.info("plugin %s can use %s, which is not open here: that part of %s is off", name, dep, name)
    return Layout(
        mounted=tuple(by_name[n] for n in settings.plugins),
        open_order=tuple(by_name[n] for n in needed),
        modes={n: modes[n] for n in needed},
    )
