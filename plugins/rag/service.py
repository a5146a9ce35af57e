"""The direct (in-process) rag service, opened by `open_direct(ctx)`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from app.plugin_kit import LocalDescription, PluginInfo, Readiness
from app.plugins import PluginContext

CAPABILITIES: tuple[str, ...] = ()


class DirectRagService:
    def __init__(self, *, about: LocalDescription) -> None:
        self._about = about

    async def describe(self) -> PluginInfo:
        return self._about.info()

    async def ready(self) -> Readiness:
        return {"ok": True}


@asynccontextmanager
async def open_direct(ctx: PluginContext) -> AsyncIterator[DirectRagService]:
    yield DirectRagService(about=LocalDescription(ctx, CAPABILITIES))
