"""Liveness, readiness, metrics and the OpenAPI document: the routes that need no key.

Readiness answers one question for an orchestrator: should this process get traffic, or be restarted? So only what
this process owns decides it: its database, its schema, and the plugins it runs in-process ("direct"). A plugin it
reaches remotely is reported too (with `mode: remote`), but that deployment's outage makes the report `degraded`
with HTTP 200, not a 503: restarting or unrouting every healthy front replica for a neighbour's outage would turn
one failure into many, and the neighbour's own readiness is what its orchestrator acts on. A call to the missing
plugin meanwhile answers 503 with `Retry-After` (its breaker), and everything else keeps serving.

Readiness is public, so it must be cheap and must not let anyone load the database or the upstreams through it:
`Readiness` (built once by the lifespan, with the migration heads it read at start-up) checks at most once a
second per replica (`ttl`) and every caller meanwhile, however many, gets that report. A check is one database
round trip (the recorded revisions, which also proves the database reachable) and each plugin's own probe, all
bounded by a timeout, in parallel.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Set
from typing import Any, cast

from pydantic import Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from app import migrations
from app.db import Database, DatabaseUnavailable
from app.http_client import without_credentials
from app.metrics import metrics_endpoint
from app.openapi import openapi_endpoint
from app.plugin_kit import PluginService
from app.plugins import Services
from app.routing import api_route, json_response
from app.schemas import Schema

log = logging.getLogger("faas.health")


class Live(Schema):
    status: str


class Ready(Schema):
    status: str = Field(
        description="ok when every check passed; degraded (still HTTP 200) when only plugins reached remotely "
        "failed theirs; unavailable (HTTP 503) when the database, the schema or an in-process plugin is not ready"
    )
    checks: dict[str, Any]


async def live(request: Request) -> Response:
    """The process is up and serving HTTP."""
    return json_response(Live(status="ok"))


# What a plugin's probe may say in public: whether it is ok, its breaker's state, an HTTP status or an exception
# class. Anything else a probe returns (an upstream's URL, provider deployment ids) goes to the log only.
_PUBLIC = ("ok", "mode", "breaker", "status", "error", "latency_ms")
_CLASS_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,80}$")


async def _plugin_check(name: str, service: PluginService, mode: str) -> tuple[str, dict[str, Any]]:
    try:
        async with asyncio.timeout(2.0):
            result = await service.ready()
    except Exception as exc:  # a failing probe is a reported check, not a 500
        log.warning("readiness of %s failed: %s: %s", name, type(exc).__name__, without_credentials(str(exc)))
        return name, {"ok": False, "mode": mode, "error": type(exc).__name__}
    report = result if isinstance(result, dict) else {"ok": bool(result)}
    ok = bool(report.get("ok", True))
    if not ok:
        log.warning("readiness of %s (%s): %s", name, mode, without_credentials(str(report)))
    public = {k: v for k, v in report.items() if k in _PUBLIC}
    if not _CLASS_NAME.match(str(public.get("error", ""))):
        public.pop("error", None)  # a message, not an exception class: it may name what the public must not see
    return name, {**public, "ok": ok, "mode": mode}


class Readiness:
    def __init__(self, db: Database, services: Services, heads: Set[str], *, ttl: float = 1.0) -> None:
        self.db = db
        self.services = services
        self.heads = frozenset(heads)
        self.ttl = ttl
        self._lock = asyncio.Lock()
        self._report: tuple[float, Ready, int] | None = None

    async def report(self) -> tuple[Ready, int]:
        """The latest report and its status, checked again when older than `ttl` (by one caller at a time)."""
        cached = self._report
        if cached is None or cached[0] <= time.monotonic():
            async with self._lock:
                cached = self._report
                if cached is None or cached[0] <= time.monotonic():
                    body, status = await self._check()
                    cached = self._report = (time.monotonic() + self.ttl, body, status)
        return cached[1], cached[2]

    async def _database(self) -> dict[str, Any]:
        """The database and migrations checks, from one round trip."""
        try:
            async with asyncio.timeout(2.0):
                behind = await migrations.pending(self.db, self.heads)
        except Exception as exc:  # an unreachable database is a reported check, not a 500
            why = exc.reason if isinstance(exc, DatabaseUnavailable) else f"{type(exc).__name__}: {exc}"
            log.warning("readiness: the database is unreachable: %s", why)
            return {"database": {"ok": False}}
        return {
            "database": {"ok": True},
            "migrations": {"ok": not behind, **({"pending": sorted(behind)} if behind else {})},
        }

    async def _check(self) -> tuple[Ready, int]:
        modes = self.services.modes
        database, *plugins = await asyncio.gather(
            self._database(),
            *(_plugin_check(n, cast(PluginService, s), modes.get(n, "direct")) for n, s in self.services.items()),
        )
        checks: dict[str, Any] = {**database, "plugins": dict(plugins)}
        # What this process owns decides whether it serves; a remote plugin's outage only degrades it.
        own = [*database.values(), *(c for c in checks["plugins"].values() if c["mode"] != "remote")]
        if not all(c["ok"] for c in own):
            return Ready(status="unavailable", checks=checks), 503
        degraded = not all(c["ok"] for c in checks["plugins"].values())
        return Ready(status="degraded" if degraded else "ok", checks=checks), 200


async def ready(request: Request) -> Response:
    """Ready to take traffic: database reachable, schema at head, and every in-process service ready; plugins
    reached remotely are reported, and their outage degrades the report without failing it (checked at most once
    a second; every caller meanwhile gets the same report)."""
    readiness: Readiness = request.state.readiness
    body, status = await readiness.report()
    return json_response(body, status=status)


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
