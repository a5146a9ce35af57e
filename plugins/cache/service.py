"""The cache service interface and its direct (in-process) implementation."""

from __future__ import annotations

from typing import Protocol

from app.plugin_kit import LocalDescription, PluginInfo
from app.plugins import PluginContext


class CacheService(Protocol):
    """What the cache plugin offers to endpoints and to other plugins, in either mode."""

    async def describe(self) -> PluginInfo:
        """Name, version, mode and capabilities of the deployment that serves cache."""
        ...


class DirectCacheService:
    def __init__(self, ctx: PluginContext) -> None:
        self._description = LocalDescription("cache", (), ())

    async def describe(self) -> PluginInfo:
        return await self._description.describe()
