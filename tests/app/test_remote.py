"""Remote mode: the same test bodies with a plugin direct and remote (the remote end a second app instance served
by uvicorn on 127.0.0.1, on the same test database), plus what only remote mode has (readiness of the upstream,
deadline propagation, streaming pass-through).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from app.main import create_app
from app.plugins import discover
from app.settings import BUILTIN_PLUGINS
from tests.app.echo_plugin import Cues, echo_plugin
from tests.conftest import (
    ADMIN_KEY,
    INTERNAL_SECRET,
    asgi_client,
    captured_logs,
    eventually,
    make_settings,
    new_tenant,
    remote_env,
    serve_app,
)
from tests.harness import Deployment, Mode, Served, deploy
from tests.lifespan import lifespan

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture(params=["direct", "remote"])
def mode(request: pytest.FixtureRequest) -> Mode:
    """This module runs its parity tests in both modes (tests/app runs direct otherwise)."""
    return request.param  # type: ignore[no-any-return]


@asynccontextmanager
async def echo_apps(
    mode: Mode, database_url: str, *, served_front: bool = False, env: dict[str, str] | None = None
) -> AsyncIterator[tuple[Any, Cues, dict[str, str]]]:
    """(front app or its URL, the cues shared with the serving instance, a tenant)."""
    cues = Cues()
    served: Served = "loop" if served_front else "no"
    async with deploy(
        database_url, mode=mode, plugins=("echo",), env=env, extra=(echo_plugin(cues),), served=served
    ) as d:
        t = await d.tenant()
        yield (d.url or d.app), cues, {"tenant_id": t.tenant_id, "api_key": t.api_key}


def tenant_client(entry: Any, tenant: dict[str, str]) -> httpx.AsyncClient:
    if isinstance(entry, str):
        return httpx.AsyncClient(base_url=entry, headers={"authorization": f"Bearer {tenant['api_key']}"})
    return asgi_client(entry, authorization=f"Bearer {tenant['api_key']}")


# --- parity: the same bodies, direct and remote -----------------------------------------------------------


async def test_builtin_plugins_describe_the_same_in_both_modes(
    api: httpx.AsyncClient, mode: str, deployment: Deployment
) -> None:
    # The serving deployment runs the plugin direct; a front adds how it reaches it (URL, breaker) in `via`.
    via = [] if mode == "direct" else [{"mode": "remote", "url": deployment.serving_url, "breaker": "closed"}]
    for name in BUILTIN_PLUGINS:
        r = await api.get(f"/api/v1/{name}/-/info")
        assert r.status_code == 200, (name, r.text)
        info = r.json()
        assert info["plugin"] == name and info["mode"] == "direct"
        assert info["via"] == via, (name, info)


async def test_builtin_plugins_refuse_a_missing_key_the_same(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/rag/-/info")
    assert r.status_code == 401 and r.json()["type"] == "urn:faas:problem:unauthenticated"


async def test_tenant_request_id_and_trace_reach_the_service(mode: Mode, database_url: str) -> None:
    async with echo_apps(mode, database_url) as (app, _, tenant), tenant_client(app, tenant) as c:
        r = await c.get("/api/v1/echo/whoami", headers={"x-request-id": "req-parity-1", "traceparent": TRACEPARENT})
    assert r.status_code == 200, r.text
    seen = r.json()
    assert seen["tenant_id"] == tenant["tenant_id"]
    assert seen["request_id"] == "req-parity-1"
    assert seen["trace_id"] == TRACE_ID
    assert r.headers["x-request-id"] == "req-parity-1"


@pytest.mark.parametrize(
    ("kind", "status", "slug"),
    [
        ("not_found", 404, "not-found"),
        ("conflict", 409, "conflict"),
        ("invalid", 422, "invalid-input"),
        ("rate_limited", 429, "rate-limited"),
        ("unavailable", 503, "unavailable"),
    ],
)
async def test_errors_come_back_as_the_same_problem(
    mode: Mode, database_url: str, kind: str, status: int, slug: str
) -> None:
    async with echo_apps(mode, database_url) as (app, _, tenant), tenant_client(app, tenant) as c:
        r = await c.post("/api/v1/echo/fail", json={"kind": kind, "detail": f"the {kind} detail"})
    assert r.status_code == status
    problem = r.json()
    assert problem["type"] == f"urn:faas:problem:{slug}" and problem["detail"] == f"the {kind} detail"
    assert problem["instance"] == "/api/v1/echo/fail"
    if kind == "conflict":
        assert problem["thing"] == "widget"


async def test_validation_errors_name_the_field_in_both_modes(mode: Mode, database_url: str) -> None:
    async with echo_apps(mode, database_url) as (app, _, tenant), tenant_client(app, tenant) as c:
        r = await c.post("/api/v1/echo/fail", json={"kind": "nope", "detail": "x"})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "kind"]


async def test_stream_passes_through_chunk_by_chunk(mode: Mode, database_url: str) -> None:
    # Chunk 1 waits on a gate the test opens only after chunk 0 arrived: a buffering hop would hang here.
    async with echo_apps(mode, database_url, served_front=True) as (url, cues, tenant), tenant_client(url, tenant) as c:
        async with c.stream("GET", "/api/v1/echo/ticks", params={"n": 3}) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            chunks = r.aiter_raw()
            async with asyncio.timeout(3):
                first = await anext(chunks)
            assert first == b"data: 0\n\n" and not cues.gate.is_set()
            cues.gate.set()
            rest = b"".join([c async for c in chunks])
    assert rest == b"data: 1\n\ndata: 2\n\n"


async def test_an_outside_clients_deadline_is_ignored(mode: Mode, database_url: str) -> None:
    """Only a verified signed call bounds the server's work: a tenant's X-Faas-Deadline-Ms (here 50 ms against
    300 ms of work) neither cuts the work short nor reaches the service, and no value of it is a 500."""
    short = {"X-Faas-Deadline-Ms": "50"}
    async with echo_apps(mode, database_url) as (app, cues, tenant), tenant_client(app, tenant) as c:
        r = await c.post("/api/v1/echo/sleep", params={"seconds": 0.3}, headers=short)
        assert r.status_code == 204, r.text
        seen = (await c.get("/api/v1/echo/whoami", headers=short)).json()
        for hostile in ("9" * 400, "-5", "1e9", "nan"):
            r = await c.get("/api/v1/echo/whoami", headers={"X-Faas-Deadline-Ms": hostile})
            assert r.status_code == 200, (hostile, r.text)
        async with asgi_client(app) if not isinstance(app, str) else httpx.AsyncClient(base_url=app) as anyone:
            r = await anyone.get("/health/live", headers={"X-Faas-Deadline-Ms": "9" * 400})
            assert r.status_code == 200
    assert cues.sleeps_finished == 1 and cues.sleeps_cancelled == 0
    if mode == "direct":
        assert seen["deadline_ms"] is None
    else:  # the front's own client deadline (30 s by default), not the tenant's
        assert seen["deadline_ms"] > 10_000


# --- remote only ----------------------------------------------------------------------------------------


async def test_deadline_reaches_the_upstream_which_stops_work_past_it(database_url: str) -> None:
    env = {"FAAS_ECHO_CLIENT_DEADLINE": "0.3", "FAAS_ECHO_CLIENT_TIMEOUT": "5"}
    async with echo_apps("remote", database_url, env=env) as (app, cues, tenant), tenant_client(app, tenant) as c:
        seen = (await c.get("/api/v1/echo/whoami")).json()
        assert 0 < seen["deadline_ms"] <= 300
        started = time.monotonic()
        r = await c.post("/api/v1/echo/sleep", params={"seconds": 2})
        elapsed = time.monotonic() - started
        assert r.status_code == 504 and r.json()["type"] == "urn:faas:problem:upstream-timeout"
        assert elapsed < 1.0
        await asyncio.sleep(0.1)
    assert cues.sleeps_started == 1 and cues.sleeps_cancelled == 1 and cues.sleeps_finished == 0


async def test_a_stream_that_has_started_may_outlast_the_deadline(database_url: str) -> None:
    # The deadline bounds the wait for an answer to start; neither hop may cut a stream that runs past it
    # (an LLM answer streamed word by word easily outlasts FAAS_CLIENT_DEADLINE).
    env = {"FAAS_ECHO_CLIENT_DEADLINE": "0.3", "FAAS_ECHO_CLIENT_TIMEOUT": "5"}
    async with (
        echo_apps("remote", database_url, served_front=True, env=env) as (url, cues, tenant),
        tenant_client(url, tenant) as c,
    ):
        async with c.stream("GET", "/api/v1/echo/ticks", params={"n": 3}) as r:
            assert r.status_code == 200
            chunks = r.aiter_raw()
            assert await anext(chunks) == b"data: 0\n\n"
            await asyncio.sleep(0.8)
            cues.gate.set()
            rest = b"".join([c async for c in chunks])
    assert rest == b"data: 1\n\ndata: 2\n\n"


async def test_ready_reports_the_upstream_and_its_breaker_and_stays_200_while_it_is_down(database_url: str) -> None:
    # A front whose remote plugin is down still serves everything else: it is degraded, not unready, so that an
    # orchestrator neither restarts nor unroutes healthy replicas for a neighbour's outage.
    cues = Cues()
    base = {"FAAS_PLUGINS": "echo", "FAAS_INTERNAL_SECRET": INTERNAL_SECRET}
    upstream = create_app(make_settings(database_url, **base), plugins=[*discover(), echo_plugin(cues)])
    served: Any = serve_app(upstream)
    url = await served.__aenter__()
    try:
        front = create_app(
            make_settings(database_url, **base, **remote_env(("echo",), url)), plugins=[*discover(), echo_plugin(cues)]
        )
        async with lifespan(front) as m, asgi_client(m.app) as c:
            r = await c.get("/health/ready")
            assert r.status_code == 200, r.text
            check = r.json()["checks"]["plugins"]["echo"]
            assert check == {**check, "ok": True, "breaker": "closed", "mode": "remote"}
            assert r.json()["status"] == "ok"
            await served.__aexit__(None, None, None)
            served = None
            with captured_logs() as lines:

                async def down() -> httpx.Response:
                    r = await c.get("/health/ready")  # the report is at most a second old
                    assert r.json()["status"] == "degraded", r.text
                    return r

                r = await eventually(down)
            assert r.status_code == 200
            check = r.json()["checks"]["plugins"]["echo"]
            assert check["ok"] is False and check["error"] == "ConnectError" and check["mode"] == "remote"
            assert r.json()["checks"]["database"] == {"ok": True}
            # The report is public: the upstream's address is the operator's, in the log.
            assert url.removeprefix("http://") not in r.text
            assert any(url in line["msg"] and line["request_id"] == r.headers["x-request-id"] for line in lines)
    finally:
        if served is not None:
            await served.__aexit__(None, None, None)


async def test_remote_mode_without_a_reachable_upstream_is_503_not_500(database_url: str) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    env = {"FAAS_INTERNAL_SECRET": INTERNAL_SECRET, **remote_env(("rag",), dead), "FAAS_RAG_CLIENT_RETRIES": "1"}
    env["FAAS_RAG_CLIENT_BACKOFF_BASE"] = "0.01"
    async with lifespan(create_app(make_settings(database_url, **env))) as m:
        async with asgi_client(m.app, authorization=f"Bearer {ADMIN_KEY}") as admin:
            tenant = await new_tenant(admin)
        async with asgi_client(m.app, authorization=f"Bearer {tenant['api_key']}") as c:
            with captured_logs() as lines:
                r = await c.get("/api/v1/rag/-/info")
            metrics = (await c.get("/metrics")).text
    assert r.status_code == 503 and r.json()["type"] == "urn:faas:problem:unavailable"
    assert 'faas_client_attempts_total{method="GET",outcome="connect_error",upstream="rag"} 2.0' in metrics
    assert 'faas_client_retries_total{reason="connect",upstream="rag"} 1.0' in metrics
    # The tenant learns what it can act on, and the request id to quote; the operator's log has the address.
    rid = r.headers["x-request-id"]
    detail = r.json()["detail"]
    assert detail == f"the rag service is unreachable; retry in a moment (request id {rid})"
    assert "127.0.0.1" not in r.text and dead.rsplit(":", 1)[1] not in r.text
    assert any(dead in line["msg"] and line["request_id"] == rid for line in lines)


async def test_one_tenants_failing_requests_never_open_the_breaker_for_the_others(database_url: str) -> None:
    """The issue: six requests of tenant A whose content made the remote deployment answer 500 opened the breaker,
    and tenant B's plain GET got 503. Only the deployment's own unavailability may open it."""
    env = {"FAAS_ECHO_CLIENT_BREAKER_FAILURES": "2", "FAAS_ECHO_CLIENT_RETRIES": "0"}
    async with echo_apps("remote", database_url, env=env) as (app, _, tenant_a):
        async with asgi_client(app, authorization=f"Bearer {ADMIN_KEY}") as admin:
            tenant_b = await new_tenant(admin)
        async with tenant_client(app, tenant_a) as a, tenant_client(app, tenant_b) as b:
            # A's requests fail on the serving deployment, each for a reason of its own: its content crashed the
            # handler (500), or something beyond the deployment failed or ran out of time for it (502, 504).
            for kind, status in [("crash", 500)] * 6 + [("upstream_failed", 502), ("upstream_timeout", 504)] * 3:
                r = await a.post("/api/v1/echo/fail", json={"kind": kind, "detail": "tenant A's own problem"})
                assert r.status_code == status, r.text
            r = await b.get("/api/v1/echo/whoami")
            assert r.status_code == 200, r.text
            assert (await b.get("/health/ready")).json()["checks"]["plugins"]["echo"]["breaker"] == "closed"
            # The deployment saying it cannot serve anyone does count: two in a row open the breaker for all.
            for _ in range(2):
                r = await a.post("/api/v1/echo/fail", json={"kind": "deployment_unavailable", "detail": "db down"})
                assert r.status_code == 503
            r = await b.get("/api/v1/echo/whoami")
            assert r.status_code == 503 and r.json()["type"] == "urn:faas:problem:circuit-open"
            assert "retry-after" in r.headers
