"""What every plugin's service has in common: the `PluginService` base of each interface, `describe()` and its
route, and readiness.

Every service interface extends `PluginService`, so a remote implementation can be checked end to end against the
deployment that serves it (`describe`) before any feature-specific route exists, and `/health/ready` can ask any
service whether it can serve (`ready`).
"""

from __future__ import annotations

from typing import Any, Protocol

from pydantic import Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from app import __version__
from app.plugins import PluginContext, ServiceKey, service
from app.routing import api_route, json_response
from app.schemas import Schema

Readiness = dict[str, Any]


class Hop(Schema):
    """How one deployment on the way reaches the plugin over HTTP."""

    mode: str = Field(description="remote: this deployment calls another one that serves the plugin")
    url: str = Field(description="FAAS_<NAME>_URL it calls, without credentials")
    breaker: str = Field(description="its circuit breaker toward that URL: closed, open or half-open")


class PluginInfo(Schema):
    plugin: str
    version: str
    mode: str = Field(description="How the deployment that runs the plugin runs it (direct)")
    requires: list[str]
    uses: dict[str, str] = Field(
        description="Optional dependencies and how this deployment reaches each: direct, remote or absent"
    )
    capabilities: list[str]
    via: list[Hop] = Field(
        default_factory=list,
        description="The deployments the call went through to reach it, the one called first first (empty when the "
        "deployment called runs the plugin in-process)",
    )


class PluginService(Protocol):
    """The methods every service interface starts with."""

    async def describe(self) -> PluginInfo:
        """Name, version, mode, dependencies and capabilities of the deployment that serves this plugin."""
        ...

    async def ready(self) -> Readiness:
        """Whether this service can serve now: `{"ok": bool, ...details}` (for /health/ready). Never raises."""
        ...


class LocalDescription:
    """The direct half of `describe()`: facts about this process (how `uses` are reached is read at call time)."""

    def __init__(self, ctx: PluginContext, capabilities: tuple[str, ...]) -> None:
        self._ctx = ctx
        self._capabilities = list(capabilities)

    def info(self) -> PluginInfo:
        return PluginInfo(
            plugin=self._ctx.plugin.name,
            version=__version__,
            mode="direct",
            requires=list(self._ctx.plugin.requires),
            uses=self._ctx.usage(),
            capabilities=self._capabilities,
        )


def describe_route(key: ServiceKey[Any]) -> BaseRoute:
    async def describe(request: Request) -> Response:
        described: PluginService = service(request, key)
        return json_response(await described.describe())

    return api_route(
        "GET", "/-/info", describe, f"Describe the {key.name} plugin", response=PluginInfo, tags=(key.name,)
    )
