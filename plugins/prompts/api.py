"""HTTP endpoints of the prompts plugin (mounted under /api/v1/prompts)."""

from __future__ import annotations

from starlette.routing import BaseRoute

from app.plugin_kit import describe_route


def routes() -> list[BaseRoute]:
    return [describe_route("prompts")]
