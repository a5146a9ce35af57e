"""HTTP endpoints of the ml plugin (mounted under /api/v1/ml)."""

from __future__ import annotations

from starlette.routing import BaseRoute

from app.plugin_kit import describe_route
from plugins.ml.interface import ML


def routes() -> list[BaseRoute]:
    return [describe_route(ML)]
