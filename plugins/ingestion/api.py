"""HTTP endpoints of the ingestion plugin (mounted under /api/v1/ingestion)."""

from __future__ import annotations

from starlette.routing import BaseRoute

from app.plugin_kit import describe_route
from plugins.ingestion.interface import INGESTION


def routes() -> list[BaseRoute]:
    return [describe_route(INGESTION)]
