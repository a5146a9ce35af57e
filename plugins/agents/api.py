"""HTTP endpoints of the agents plugin (mounted under /api/v1/agents)."""

from __future__ import annotations

from starlette.routing import BaseRoute

from app.plugin_kit import describe_route
from plugins.agents.interface import AGENTS


def routes() -> list[BaseRoute]:
    return [describe_route(AGENTS)]
