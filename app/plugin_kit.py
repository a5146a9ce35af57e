"""Pieces every plugin shares: the `describe` contract (what a plugin is and how it runs here) and its route.

Every service interface starts with `describe()`, so a remote implementation can be checked end to end
against the deployment that serves it before any feature-specific route exists.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from app import __version__
from app.plugins import PluginContext, Services
from app.routing import Schema, api_route, json_response


class PluginInfo(Schema):
    plugin: str
    version: str
    mode: str
    requires: list[str]
    capabilities: list[str]


class DescribedService(Protocol):
    async def describe(self) -> PluginInfo: ...


class LocalDescription:
    """The direct half of `describe()`: facts about this process."""

    def __init__(self, name: str, requires: tuple[str, ...], capabilities: tuple[str, ...]) -> None:
        self._info = PluginInfo(
            plugin=name,
            version=__version__,
            mode="direct",
            requires=list(requires),
            capabilities=list(capabilities),
        )

    async def describe(self) -> PluginInfo:
        return self._info


def describe_route(name: str) -> BaseRoute:
    async def describe_plugin(request: Request) -> Response:
        services: Services = request.state.services
        service: DescribedService = getattr(services, name)
        return json_response(await service.describe())

    describe_plugin.__name__ = f"describe_{name}"
    return api_route(
        "GET", "/-/info", describe_plugin, f"Describe the {name} plugin", response=PluginInfo, tags=(name,)
    )


def direct_factory(cls: type[Any]) -> Any:
    """A service factory for a class constructed from the plugin context, with nothing to close."""

    @asynccontextmanager
    async def factory(ctx: PluginContext) -> AsyncIterator[Any]:
        yield cls(ctx)

    return factory
