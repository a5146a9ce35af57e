"""The service client against a real upstream on 127.0.0.1: retries, Retry-After, timeouts, deadline, connection
faults, the breaker, the retry budget, idempotency, signing, metrics and streaming. Waits are kept short through
the constructor's options, so the suite runs in seconds.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from app import context
from app.breaker import CircuitOpen
from app.client_metrics import ClientMetrics
from app.errors import Conflict, Unavailable, UpstreamFailed, UpstreamTimeout
from app.http_client import RetryBudget, ServiceHTTPClient, raise_for_problem, retry_after_seconds
from app.http_transport import pooled_transport
from app.settings import ClientSettings
from app.signing import DEADLINE_HEADER, body_digest, canonical, signature
from tests.app.fault_server import FaultServer, Step, fault_server
from tests.conftest import serve_app

SECRET = "fault-suite-secret-0123456789"
FAST = ClientSettings(
    timeout=0.3,
    connect_timeout=0.3,
    deadline=2.0,
    retries=3,
    backoff_base=0.01,
    backoff_max=0.02,
    retry_after_max=0.3,
    breaker_failures=5,
    breaker_reset=0.15,
)


class Client:
    """A client under test with its breaker transitions recorded."""

    def __init__(self, url: str, **options: float) -> None:
        self.registry = CollectorRegistry()
        opts = ClientSettings(**{**FAST.__dict__, **options})
        self.http = ServiceHTTPClient(
            "up", url, options=opts, secret=SECRET, metrics=ClientMetrics(self.registry), budget=RetryBudget(1.0)
        )
        self.transitions: list[tuple[str, str]] = []
        to_metrics = self.http.breaker.on_transition
        assert to_metrics is not None

        def record(name: str, old: str, new: str) -> None:
            self.transitions.append((old, new))
            to_metrics(name, old, new)

        self.http.breaker.on_transition = record

    def metric(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, {"upstream": "up", **labels})
        return value or 0.0


@pytest.fixture
async def upstream() -> AsyncIterator[FaultServer]:
    async with fault_server() as server:
        yield server


@pytest.fixture
async def client(upstream: FaultServer) -> AsyncIterator[Client]:
    c = Client(upstream.url)
    yield c
    await c.http.aclose()


async def timed(coro: object) -> tuple[object, float]:
    started = time.monotonic()
    result = await coro  # type: ignore[misc]
    return result, time.monotonic() - started


async def test_burst_of_503_is_retried_then_succeeds(upstream: FaultServer, client: Client) -> None:
    upstream.script = [Step(503), Step(503), Step(200)]
    r, elapsed = await timed(client.http.get("/x"))
    assert isinstance(r, httpx.Response) and r.status_code == 200
    assert upstream.attempts == 3 and elapsed < 1.0  # backoff of 0.01-0.02 s, with slack for a busy machine
    assert client.metric("faas_client_retries_total", reason="status_503") == 2
    assert client.transitions == []


async def test_503_until_retries_run_out_returns_the_last_answer(upstream: FaultServer, client: Client) -> None:
    upstream.script = [Step(503, body=b'{"type":"urn:faas:problem:unavailable","status":503,"detail":"busy"}')] * 9
    r, elapsed = await timed(client.http.get("/x"))
    assert isinstance(r, httpx.Response) and r.status_code == 503
    assert upstream.attempts == 4 and elapsed < 1.0
    assert client.metric("faas_client_giveups_total", reason="exhausted") == 1
    with pytest.raises(Unavailable, match="busy"):
        raise_for_problem(r)


async def test_503_burst_opens_the_breaker_which_then_fails_fast_and_probes_once(
    upstream: FaultServer, client: Client
) -> None:
    upstream.script = [Step(503)] * 5
    await client.http.get("/x")  # 4 tries, all 503
    with pytest.raises(CircuitOpen):
        await client.http.get("/x")  # the 5th failure opens it; the next try is refused locally
    assert upstream.attempts == 5
    assert client.transitions == [("closed", "open")]
    for _ in range(20):
        (exc_elapsed) = time.monotonic()
        with pytest.raises(CircuitOpen) as info:
            await client.http.get("/x")
        assert time.monotonic() - exc_elapsed < 0.1
    assert upstream.attempts == 5  # no traffic while open
    assert info.value.status == 503 and int(info.value.headers["Retry-After"]) >= 1
    assert client.metric("faas_client_breaker_state") == 2
    await asyncio.sleep(0.16)
    upstream.script = [Step(200, delay=0.05)]
    trial = asyncio.create_task(client.http.get("/x"))
    await asyncio.sleep(0.01)
    with pytest.raises(CircuitOpen):
        await client.http.get("/x")  # half-open: only the one trial goes through
    assert (await trial).status_code == 200
    assert upstream.attempts == 6
    assert client.transitions == [("closed", "open"), ("open", "half-open"), ("half-open", "closed")]
    assert client.metric("faas_client_breaker_state") == 0


async def test_4xx_answers_never_open_the_breaker(upstream: FaultServer, client: Client) -> None:
    upstream.script = [Step(404)] * 10
    for _ in range(10):
        assert (await client.http.get("/x")).status_code == 404
    assert upstream.attempts == 10 and client.transitions == []


PROBLEM = "application/problem+json"


def _case(counts: bool, status: int, content_type: str, body: bytes = b"{}", **headers: str) -> Any:
    kind = "problem" if content_type == PROBLEM else content_type.split("/")[1]
    name = f"{status}-{kind}{'-marked' if headers else ''}"
    return pytest.param(Step(status, content_type=content_type, body=body, headers=headers), counts, id=name)


@pytest.mark.parametrize(
    ("step", "counts"),
    [
        # Answers about one request, or about something beyond the deployment: it answered, so it is up.
        _case(False, 500, PROBLEM, b'{"type":"urn:faas:problem:internal","status":500}'),
        _case(False, 502, PROBLEM, b'{"type":"urn:faas:problem:upstream-failed","status":502}'),
        _case(False, 503, PROBLEM, b'{"type":"urn:faas:problem:circuit-open","status":503}'),
        _case(False, 504, PROBLEM, b'{"type":"urn:faas:problem:upstream-timeout","status":504}'),
        _case(False, 500, "text/html", b"<h1>Internal Server Error</h1>"),
        # The deployment saying it cannot serve anyone, or a proxy answering for a deployment that is not there.
        _case(True, 503, PROBLEM, b"{}", **{"X-Faas-Unavailable": "database"}),
        _case(True, 502, "text/html", b"<h1>502 Bad Gateway</h1>"),
        _case(True, 503, "text/plain", b"no healthy upstream"),
        _case(True, 504, "text/html", b"<h1>504 Gateway Time-out</h1>"),
    ],
)
async def test_what_counts_against_the_deployment(upstream: FaultServer, step: Step, counts: bool) -> None:
    c = Client(upstream.url, breaker_failures=2, retries=0)
    upstream.script = [step] * 5
    for _ in range(5):
        try:
            await c.http.post("/x", json_data={})
        except CircuitOpen:
            break
    await c.http.aclose()
    if counts:
        assert c.transitions == [("closed", "open")] and upstream.attempts == 2
    else:
        assert c.transitions == [] and upstream.attempts == 5 and c.http.breaker._core.fail_counter == 0


async def test_a_try_cut_short_by_the_calls_own_deadline_decides_nothing(upstream: FaultServer) -> None:
    # A caller in a hurry (its deadline shorter than the per-try timeout) says nothing about the deployment.
    c = Client(upstream.url, deadline=0.05, timeout=0.3, breaker_failures=2)
    upstream.script = [Step(200, delay=0.2)] * 5
    for _ in range(5):
        with pytest.raises(UpstreamTimeout):
            await c.http.get("/x")
    await c.http.aclose()
    assert c.transitions == [] and c.http.breaker._core.fail_counter == 0


async def test_429_retry_after_seconds_is_honoured_without_jitter(upstream: FaultServer, client: Client) -> None:
    upstream.script = [Step(429, headers={"Retry-After": "0.2"}), Step(200)]
    r, elapsed = await timed(client.http.get("/x"))
    assert isinstance(r, httpx.Response) and r.status_code == 200
    assert upstream.attempts == 2 and 0.2 <= elapsed < 1.5


async def test_429_retry_after_is_capped(upstream: FaultServer, client: Client) -> None:
    upstream.script = [Step(429, headers={"Retry-After": "3600"}), Step(200)]
    r, elapsed = await timed(client.http.get("/x"))
    assert isinstance(r, httpx.Response) and r.status_code == 200
    assert upstream.attempts == 2 and 0.3 <= elapsed < 1.5


async def test_429_retry_after_http_date(upstream: FaultServer, client: Client) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=5), usegmt=True)
    upstream.script = [Step(429, headers={"Retry-After": when}), Step(200)]
    r, elapsed = await timed(client.http.get("/x"))
    assert isinstance(r, httpx.Response) and r.status_code == 200
    # Read as a date 4-5 s ahead, then capped at 0.3 s (an unread header would fall back to ~0.01 s backoff).
    assert upstream.attempts == 2 and 0.3 <= elapsed < 1.5
    assert 3.5 < (retry_after_seconds(when) or 0) <= 5


async def test_retry_after_past_the_deadline_gives_up_at_once(upstream: FaultServer) -> None:
    c = Client(upstream.url, deadline=0.2, retry_after_max=5.0)
    upstream.script = [Step(503, headers={"Retry-After": "1"})]
    r, elapsed = await timed(c.http.get("/x"))
    await c.http.aclose()
    assert isinstance(r, httpx.Response) and r.status_code == 503
    assert upstream.attempts == 1 and elapsed < 0.5
    assert c.metric("faas_client_giveups_total", reason="deadline") == 1


async def test_answer_slower_than_the_per_try_timeout(upstream: FaultServer, client: Client) -> None:
    upstream.script = [Step(200, delay=1.0)]
    with pytest.raises(UpstreamTimeout):
        await client.http.get("/x")
    assert upstream.attempts == 1  # a read timeout may have done the work: it is not retried
    assert client.metric("faas_client_attempts_total", method="GET", outcome="timeout") == 1
    assert client.http.breaker._core.fail_counter == 1


async def test_per_try_timeout_is_measured(upstream: FaultServer, client: Client) -> None:
    upstream.script = [Step(200, delay=1.0)]
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        await client.http.get("/x")
    assert 0.28 <= time.monotonic() - started < 0.5


async def test_overall_deadline_bounds_all_tries(upstream: FaultServer) -> None:
    c = Client(upstream.url, deadline=0.25, timeout=5.0, retry_after_max=0.1, retries=10)
    upstream.script = [Step(503, headers={"Retry-After": "0.1"})] * 10
    r, elapsed = await timed(c.http.get("/x"))
    await c.http.aclose()
    assert isinstance(r, httpx.Response) and r.status_code == 503
    assert elapsed < 1.0 and upstream.attempts == 3
    sent = [int(s.headers[DEADLINE_HEADER.lower()]) for s in upstream.seen]
    assert sent[0] <= 250 and sent[0] > sent[1] > sent[2] > 0  # the remaining time travels with each try


async def test_overall_deadline_cancels_the_try_in_flight(upstream: FaultServer) -> None:
    c = Client(upstream.url, deadline=0.15, timeout=5.0)
    upstream.script = [Step(200, delay=1.0)]
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        await c.http.get("/x")
    await c.http.aclose()
    assert time.monotonic() - started < 0.25


async def test_inherited_deadline_is_respected(upstream: FaultServer, client: Client) -> None:
    upstream.script = [Step(200, delay=1.0)]

    async def in_request() -> None:
        context.bind(deadline=time.monotonic() + 0.1)
        await client.http.get("/x")

    started = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        await asyncio.create_task(in_request())
    assert time.monotonic() - started < 0.2
    assert int(upstream.seen[0].headers[DEADLINE_HEADER.lower()]) <= 100


async def test_connection_refused_is_retried_then_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    c = Client(dead, breaker_failures=10)
    with pytest.raises(Unavailable) as info:
        await c.http.get("/x")
    await c.http.aclose()
    assert c.metric("faas_client_attempts_total", method="GET", outcome="connect_error") == 4
    assert c.metric("faas_client_retries_total", reason="connect") == 3
    assert info.value.status == 503 and not isinstance(info.value, CircuitOpen)
    assert c.http.breaker._core.fail_counter == 4


async def test_connection_refused_opens_the_breaker() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    c = Client(dead, breaker_failures=2, retries=0)
    for _ in range(2):
        with pytest.raises(Unavailable):
            await c.http.get("/x")
    with pytest.raises(CircuitOpen):
        await c.http.get("/x")
    await c.http.aclose()
    assert c.transitions == [("closed", "open")]
    assert c.metric("faas_client_attempts_total", method="GET", outcome="connect_error") == 2


async def test_connection_reset_mid_body(upstream: FaultServer, client: Client) -> None:
    upstream.script = [Step(200, body=b"x" * 4000, fault="reset_mid_body")]
    started = time.monotonic()
    with pytest.raises(UpstreamFailed):
        await client.http.get("/x")
    assert upstream.attempts == 1 and time.monotonic() - started < 0.3
    assert client.metric("faas_client_attempts_total", method="GET", outcome="broken") == 1
    assert client.http.breaker._core.fail_counter == 1


async def test_post_without_idempotency_key_is_sent_once(upstream: FaultServer, client: Client) -> None:
    upstream.script = [Step(503), Step(200)]
    r = await client.http.post("/x", json_data={"a": 1})
    assert r.status_code == 503 and upstream.attempts == 1
    assert client.metric("faas_client_giveups_total", reason="not_idempotent") == 1


async def test_post_hang_up_before_answer_is_not_resent(upstream: FaultServer, client: Client) -> None:
    # aiohttp reports this as a connect timeout; read as "never sent" it would run the POST twice.
    upstream.script = [Step(fault="hang_up"), Step(200)]
    with pytest.raises(UpstreamFailed):
        await client.http.post("/x", json_data={"a": 1})
    assert upstream.attempts == 1


async def test_post_with_idempotency_key_is_retried(upstream: FaultServer, client: Client) -> None:
    upstream.script = [Step(503), Step(200)]
    headers = {**client.http.get_headers(tenant_id="ten_a"), "Idempotency-Key": "k-1"}
    r = await client.http.post("/x", json_data={"a": 1}, headers=headers)
    assert r.status_code == 200 and upstream.attempts == 2
    assert upstream.seen[0].body == upstream.seen[1].body == b'{"a":1}'


async def test_retry_budget_stops_an_outage_from_multiplying_load(upstream: FaultServer) -> None:
    c = Client(upstream.url, breaker_failures=1000)
    c.http.budget = RetryBudget(0.0, floor=3, window=10.0)
    upstream.script = [Step(503)] * 100
    for _ in range(10):
        await c.http.get("/x")
    await c.http.aclose()
    # The first call spends the floor of 3 retries; the other 9 calls get no retry at all.
    assert upstream.attempts == 4 + 9
    assert c.metric("faas_client_giveups_total", reason="budget") == 9


async def test_requests_are_signed_over_what_was_sent(upstream: FaultServer, client: Client) -> None:
    context.bind(request_id="rid-1", traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    headers = {**client.http.get_headers(tenant_id="ten_a"), "Idempotency-Key": "k-9"}
    await client.http.put("/things/a b", json_data={"n": 1}, params={"q": "x/y"}, headers=headers)
    seen = upstream.seen[0]
    h = seen.headers
    assert h["x-tenant-id"] == "ten_a" and h["x-request-id"] == "rid-1" and h["traceparent"].startswith("00-4bf9")
    message = canonical(
        "PUT",
        seen.target,
        host=h["host"],
        tenant="ten_a",
        request_id="rid-1",
        timestamp=h["x-faas-timestamp"],
        nonce=h["x-faas-nonce"],
        deadline=h[DEADLINE_HEADER.lower()],
        idempotency_key="k-9",
        digest=body_digest(seen.body),
    )
    assert h["x-faas-signature"] == signature(SECRET, message)
    assert seen.target.startswith("/things/a%20b?q=x") and h["host"] == upstream.url.removeprefix("http://")


async def test_every_try_is_signed_afresh(upstream: FaultServer, client: Client) -> None:
    # A retry is a new call, not a replay: the upstream must be able to accept it after refusing nothing else.
    upstream.script = [Step(503), Step(503), Step(200)]
    assert (await client.http.get("/x")).status_code == 200
    nonces = {s.headers["x-faas-nonce"] for s in upstream.seen}
    signatures = {s.headers["x-faas-signature"] for s in upstream.seen}
    assert len(upstream.seen) == 3 and len(nonces) == 3 and len(signatures) == 3


async def test_an_answer_that_is_not_our_problem_is_logged_not_relayed(upstream: FaultServer, client: Client) -> None:
    # A proxy's error page or a foreign JSON error may name internal hosts: the tenant gets a generic detail.
    upstream.script = [
        Step(502, content_type="text/html", body=b"<h1>Bad Gateway</h1>prompts-7f9c.svc.cluster.local:8000 refused"),
        Step(500, body=b'{"message": "connect error to 10.1.2.3:5432", "host": "db-7f9c"}'),
    ]
    context.bind(request_id="rid-foreign")
    for status in (502, 500):
        r = await client.http.post("/x", json_data={})
        assert r.status_code == status
        with pytest.raises(UpstreamFailed) as info:
            raise_for_problem(r)
        shown = orjson.dumps(info.value.to_problem()).decode()
        assert "7f9c" not in shown and "10.1.2.3" not in shown
        assert info.value.detail == f"an internal service answered HTTP {status} (request id rid-foreign)"


async def test_default_pooled_transport_maps_faults_right(upstream: FaultServer) -> None:
    upstream.script = [Step(fault="hang_up")]
    async with httpx.AsyncClient(transport=pooled_transport()) as c:
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            await c.get(upstream.url + "/x")  # not ConnectError/ConnectTimeout: the request did reach the server
        assert upstream.attempts == 1  # and aiohttp's hidden re-send of a GET is off
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            dead = s.getsockname()[1]
        with pytest.raises(httpx.ConnectError):
            await c.get(f"http://127.0.0.1:{dead}/")


async def test_metrics_render(upstream: FaultServer, client: Client) -> None:
    await client.http.get("/x")
    text = generate_latest(client.registry).decode()
    for name in (
        "faas_client_attempts_total",
        "faas_client_upstream_duration_seconds_bucket",
        "faas_client_breaker_state",
    ):
        assert name in text


# --- streaming against a real uvicorn ----------------------------------------------------------------------


async def test_stream_yields_chunks_as_they_arrive_and_problems_raise() -> None:
    gate = asyncio.Event()

    async def sse(request: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            yield b"data: one\n\n"
            await gate.wait()
            yield b"data: two\n\n"

        return StreamingResponse(body(), media_type="text/event-stream")

    async def conflict(request: Request) -> Response:
        problem = b'{"type":"urn:faas:problem:conflict","status":409,"detail":"taken"}'
        return Response(problem, status_code=409, media_type="application/problem+json")

    app = Starlette(routes=[Route("/sse", sse), Route("/conflict", conflict)])
    async with serve_app(app) as url:
        c = ServiceHTTPClient("sse", url, options=FAST)
        chunks = c.stream("GET", "/sse")
        async with asyncio.timeout(2):
            assert await anext(chunks) == b"data: one\n\n"
        assert not gate.is_set()
        gate.set()
        assert [x async for x in chunks] == [b"data: two\n\n"]
        with pytest.raises(Conflict, match="taken"):
            async for _ in c.stream("GET", "/conflict"):
                pass
        await c.aclose()


def test_credentials_in_urls_never_reach_the_public_readiness_report() -> None:
    from app.http_client import without_credentials

    assert without_credentials("http://svc:s3cret@rag:8000/x") == "http://***@rag:8000/x"
    assert (
        without_credentials("ConnectError: redis://:pw@cache:6379 refused")
        == "ConnectError: redis://***@cache:6379 refused"
    )
    assert without_credentials("http://rag:8000") == "http://rag:8000"
