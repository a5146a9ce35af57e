"""HTTP endpoints of the cache plugin (mounted under /api/v1/cache)."""

from __future__ import annotations

from starlette.routing import BaseRoute

from app.plugin_kit import describe_route


def routes() -> list[BaseRoute]:
    return [describe_route("cache")]
