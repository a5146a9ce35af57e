"""Liveness, readiness, metrics and the OpenAPI document: the routes that need no key."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from pydantic import Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from app import migrations
from app.http_client import without_credentials
from app.metrics import metrics_endpoint
from app.openapi import openapi_endpoint
from app.plugin_kit import PluginService
from app.plugins import Services
from app.routing import api_route, json_response
from app.schemas import Schema


class Live(Schema):
    status: str


class Ready(Schema):
    status: str = Field(description="ok when every check passed, else unavailable")
    checks: dict[str, Any]


async def live(request: Request) -> Response:
    """The process is up and serving HTTP."""
    return json_response(Live(status="ok"))


async def _plugin_check(name: str, service: PluginService) -> tuple[str, dict[str, Any]]:
    try:
        async with asyncio.timeout(2.0):
            result = await service.ready()
    except Exception as exc:  # a failing probe is a reported check, not a 500
        return name, {"ok": False, "error": without_credentials(f"{type(exc).__name__}: {exc}")[:300]}
    return name, {**result, "ok": bool(result.get("ok", True))}


async def ready(request: Request) -> Response:
    """Ready to take traffic: database reachable, schema at head, and every opened service ready."""
    db = request.state.db
    checks: dict[str, Any] = {}
    reachable = await db.ping()
    checks["database"] = {"ok": reachable}
    if reachable:
        behind = await migrations.pending(db)
        checks["migrations"] = {"ok": not behind, **({"pending": sorted(behind)} if behind else {})}
    services: Services = request.state.services
    results = await asyncio.gather(*(_plugin_check(n, cast(PluginService, s)) for n, s in services.items()))
    checks["plugins"] = dict(results)
    ok = all(c["ok"] for k, c in checks.items() if k != "plugins") and all(c["ok"] for c in checks["plugins"].values())
    return json_response(Ready(status="ok" if ok else "unavailable", checks=checks), status=200 if ok else 503)


def routes() -> list[BaseRoute]:
    return [
        api_route("GET", "/health/live", live, "Liveness", response=Live, auth="none", tags=("health",)),
        api_route(
            "GET",
            "/health/ready",
            ready,
            "Readiness",
            response=Ready,
            auth="none",
            tags=("health",),
            also=(503,),
        ),
        api_route(
            "GET",
            "/metrics",
            metrics_endpoint,
            "Prometheus metrics",
            auth="none",
            tags=("health",),
            content={"text/plain": {"type": "string", "description": "Prometheus text exposition format"}},
        ),
        api_route(
            "GET",
            "/openapi.json",
            openapi_endpoint,
            "This OpenAPI document",
            auth="none",
            tags=("health",),
            content={"application/json": {"type": "object", "description": "OpenAPI 3.1 document"}},
        ),
    ]
