"""HTTP endpoints of the rag plugin (mounted under /api/v1/rag)."""

from __future__ import annotations

from starlette.routing import BaseRoute

from app.plugin_kit import describe_route
from plugins.rag.interface import RAG


def routes() -> list[BaseRoute]:
    return [describe_route(RAG)]
