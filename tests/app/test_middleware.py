"""Request id, trace context, body limit, validation errors, access log and metrics: what every request gets."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app import context
from app.logs import JsonFormatter
from app.main import create_app
from tests.conftest import ADMIN_KEY, asgi_client, make_settings, serve_app
from tests.harness import bare_plugin
from tests.lifespan import lifespan


async def test_request_id_is_generated_and_echoed(client: httpx.AsyncClient) -> None:
    a = await client.get("/health/live")
    b = await client.get("/health/live")
    assert len(a.headers["x-request-id"]) >= 16 and a.headers["x-request-id"] != b.headers["x-request-id"]


async def test_request_id_is_accepted_from_the_caller(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/rag/-/info", headers={"x-request-id": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    assert r.json()["request_id"] == "abc-123"  # the 401 problem carries it too


async def test_unsafe_request_id_is_replaced(client: httpx.AsyncClient) -> None:
    r = await client.get("/health/live", headers={"x-request-id": "evil id;" + "x" * 300})
    assert r.headers["x-request-id"] != "" and "evil" not in r.headers["x-request-id"]


async def test_traceparent_continues_the_callers_trace(client: httpx.AsyncClient) -> None:
    incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    r = await client.get("/health/live", headers={"traceparent": incoming})
    out = context.parse_traceparent(r.headers["traceparent"])
    assert out is not None and out.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert out.span_id != "b7ad6b7169203331" and out.flags == "01"


async def test_bad_traceparent_starts_a_new_trace(client: httpx.AsyncClient) -> None:
    r = await client.get("/health/live", headers={"traceparent": "00-zz-yy-01"})
    assert context.parse_traceparent(r.headers["traceparent"]) is not None


@pytest.fixture
async def small_app(database_url: str) -> AsyncIterator[Any]:
    app = create_app(make_settings(database_url, FAAS_MAX_BODY_BYTES="2048"))
    async with lifespan(app) as m:
        yield m.app


async def test_body_over_the_limit_is_413_by_content_length(small_app: Any) -> None:
    async with asgi_client(small_app, authorization=f"Bearer {ADMIN_KEY}") as c:
        r = await c.post(
            "/api/v1/admin/tenants",
            content=b'{"name": "' + b"x" * 5000 + b'"}',
            headers={"content-type": "application/json"},
        )
    assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json"
    assert "FAAS_MAX_BODY_BYTES" in r.json()["detail"]


async def test_body_over_the_limit_is_413_when_streamed(small_app: Any) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"name": "'
        for _ in range(10):
            yield b"y" * 500
        yield b'"}'

    async with asgi_client(small_app, authorization=f"Bearer {ADMIN_KEY}") as c:
        r = await c.post("/api/v1/admin/tenants", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        listed = (await c.get("/api/v1/admin/tenants")).json()["data"]
    assert listed == []  # nothing was half-created


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b'{"name": ', 400, "not valid JSON"),
        (b"", 400, "empty"),
        (b'{"name": 5}', 422, "name"),
        (b'{"name": "ok", "colour": "red"}', 422, "colour"),
        (b"[1, 2]", 422, "request body"),
    ],
)
async def test_bad_bodies_say_what_was_wrong(admin: httpx.AsyncClient, body: bytes, status: int, fragment: str) -> None:
    r = await admin.post("/api/v1/admin/tenants", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status
    problem = r.json()
    assert problem["status"] == status and problem["type"].startswith("urn:faas:problem:")
    assert fragment in json.dumps(problem)
    assert "Traceback" not in r.text


async def test_unknown_route_and_wrong_method_are_problems(admin: httpx.AsyncClient) -> None:
    r = await admin.get("/api/v1/nowhere")
    assert r.status_code == 404 and r.json()["type"] == "urn:faas:problem:not-found"
    r = await admin.put("/api/v1/admin/tenants", json={})
    assert r.status_code == 405 and set(r.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}


async def test_metrics_count_requests_by_route_template(admin: httpx.AsyncClient) -> None:
    for _ in range(3):
        await admin.get("/api/v1/admin/tenants/ten_missing")
    text = (await admin.get("/metrics")).text
    line = 'faas_http_requests_total{method="GET",route="/api/v1/admin/tenants/{tenant_id}",status="404"} 3.0'
    assert line in text
    assert (
        'faas_http_request_duration_seconds_bucket{le="0.005",method="GET",route="/api/v1/admin/tenants/{tenant_id}"}'
        in text
    )


HOSTILE_HEADERS = [
    {"x-faas-deadline-ms": "9" * 400},
    {"x-faas-deadline-ms": "9" * 5000},
    {"x-faas-deadline-ms": "-5"},
    {"x-faas-deadline-ms": "nan"},
    {"x-faas-signature": "v2=00", "x-faas-timestamp": "9" * 400, "x-tenant-id": "ten_x"},
    {"x-faas-signature": "v2=00", "x-faas-timestamp": "-" + "9" * 400, "x-tenant-id": "ten_x"},
    {"x-faas-signature": "v2=\xe9\xff", "x-faas-timestamp": "1", "x-faas-nonce": "\xe9" * 32, "x-tenant-id": "t"},
    {"content-length": "9" * 400},
    {"content-length": "9" * 5000},
    {"content-length": "-1"},
    {"traceparent": "00-" + "a" * 4000},
    {"x-request-id": "\xe9" * 300},
    {"authorization": "Bearer " + "\xe9" * 10},
    {"authorization": "Basic x"},
    {"idempotency-key": "9" * 400},
]


async def test_no_header_value_is_a_500(database_url: str) -> None:
    """Any route, with or without auth: a header parsed as a number, a trace or a request id is 4xx at worst
    (a 400-digit X-Faas-Deadline-Ms or X-Faas-Timestamp was a 500 on every route)."""
    app = create_app(make_settings(database_url, FAAS_INTERNAL_SECRET="test-internal-secret-0123456789"))
    async with lifespan(app) as m, asgi_client(m.app) as c:
        for hostile in HOSTILE_HEADERS:
            raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in hostile.items()]
            for path in ("/health/live", "/health/ready", "/api/v1/prompts", "/api/v1/admin/tenants", "/v1/models"):
                r = await c.get(path, headers=raw)
                assert r.status_code < 500, (hostile, path, r.status_code, r.text)


async def test_access_log_is_json_with_the_request_id(database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(make_settings(database_url, FAAS_ACCESS_LOG="on"))
    with caplog.at_level(logging.INFO, logger="faas.access"):
        async with lifespan(app) as m, asgi_client(m.app) as c:
            await c.get("/health/live", headers={"x-request-id": "req-42"})
    records = [r for r in caplog.records if r.name == "faas.access"]
    assert records, "no access log line"
    rec = records[-1]
    assert (rec.route, rec.status) == ("/health/live", 200)  # type: ignore[attr-defined]
    context.bind(request_id="req-42")
    line = json.loads(JsonFormatter().format(rec))
    assert line["request_id"] == "req-42" and line["route"] == "/health/live" and line["status"] == 200


async def test_unexpected_error_is_500_problem_without_trace(database_url: str) -> None:
    from starlette.requests import Request
    from starlette.responses import Response

    from app.plugins import discover
    from app.routing import api_route

    async def boom(request: Request) -> Response:
        raise RuntimeError("secret internals")

    plugin = bare_plugin("boom", lambda: [api_route("GET", "/x", boom, "Boom", auth="none")])
    app = create_app(make_settings(database_url, FAAS_PLUGINS="boom"), plugins=[*discover(), plugin])
    async with lifespan(app) as m, asgi_client(m.app) as c:
        r = await c.get("/api/v1/boom/x")
    assert r.status_code == 500 and r.headers["content-type"] == "application/problem+json"
    assert "secret internals" not in r.text and "Traceback" not in r.text and r.json()["request_id"]


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str) -> tuple[int, bytes]:
    """One HTTP/1.1 request on an open connection, and its status and body (b"" status 0 if the server hung up)."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    await writer.drain()
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return 0, b""
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(v) for k, _, v in (line.partition(": ") for line in lines[1:]) if k.lower() == "content-length")
    return int(lines[0].split(" ")[1]), await reader.readexactly(length)


async def test_an_unexpected_error_is_logged_once_and_the_connection_kept(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Starlette answers an unexpected error and re-raises it, so the server logged it a second time and closed the
    connection; a service client's next call on that pooled connection then failed as "broke off"."""
    from starlette.requests import Request
    from starlette.responses import Response

    from app.plugins import discover
    from app.routing import api_route

    async def boom(request: Request) -> Response:
        raise RuntimeError("secret internals")

    plugin = bare_plugin("boom", lambda: [api_route("GET", "/x", boom, "Boom", auth="none")])
    app = create_app(make_settings(database_url, FAAS_PLUGINS="boom"), plugins=[*discover(), plugin])
    with caplog.at_level(logging.INFO):
        async with serve_app(app) as url:
            host, port = url.removeprefix("http://").split(":")
            reader, writer = await asyncio.open_connection(host, int(port))
            try:
                status, body = await _exchange(reader, writer, "/api/v1/boom/x")
                assert status == 500 and b"secret internals" not in body
                assert await _exchange(reader, writer, "/health/live") == (200, b'{"status":"ok"}')
            finally:
                writer.close()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.name for r in errors] == ["faas.errors"], [r.getMessage() for r in errors]


async def test_a_value_postgresql_refuses_is_422_not_500(database_url: str) -> None:
    """The net under validation: a NUL character or an out-of-range number reaching the database is the
    client's input error, answered as such, and nothing is half-written."""
    from starlette.requests import Request
    from starlette.responses import Response

    from app.plugins import discover
    from app.routing import api_route, json_response

    async def store(request: Request) -> Response:
        value = request.query_params["v"]
        db = request.state.db
        await db.execute("CREATE TABLE IF NOT EXISTS scratch (t text, n int4)")
        async with db.transaction():
            await db.execute("INSERT INTO scratch (t) VALUES ('first')")
            if value == "big":
                await db.execute("INSERT INTO scratch (n) VALUES (CAST(:v AS bigint))", {"v": 2**40})
            else:
                await db.execute("INSERT INTO scratch (t) VALUES (:v)", {"v": value})
        return json_response({"rows": await db.fetch_val("SELECT count(*) FROM scratch")})

    plugin = bare_plugin("scratch", lambda: [api_route("POST", "/", store, "Store", auth="none")])
    app = create_app(make_settings(database_url, FAAS_PLUGINS="scratch"), plugins=[*discover(), plugin])
    async with lifespan(app) as m, asgi_client(m.app) as c:
        for bad in ("a\x00b", "big"):
            r = await c.post("/api/v1/scratch", params={"v": bad})
            assert r.status_code == 422, r.text
            assert r.json()["type"] == "urn:faas:problem:invalid-input"
        r = await c.post("/api/v1/scratch", params={"v": "fine"})
    assert r.json() == {"rows": 2}  # 'first' rows of the refused requests were rolled back


async def test_a_body_of_too_many_values_is_refused_before_it_is_parsed(admin: httpx.AsyncClient) -> None:
    # 9 MB of tiny values is under the body size limit; what it would cost to build is not.
    flood = b'{"name": "x", "extra": [' + b",".join([b"0"] * 2_000_000) + b"]}"
    r = await admin.post("/api/v1/admin/tenants", content=flood, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["code"] == "too_many_values", r.text
    assert "100,000 JSON values" in r.json()["detail"]
    # A large body within the budget is parsed and validated as usual.
    fine = b'{"name": "' + b"n" * 100 + b'", "pad": "' + b"x" * 200_000 + b'"}'
    r = await admin.post("/api/v1/admin/tenants", content=fine, headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "pad"], r.text
