"""Signed internal calls on the receiving side: a valid signature vouches for the tenant; a forged, stale,
tenant-swapped, body- or path-tampered call is 401, whatever its headers claim; without a secret none is trusted.
A call is accepted once (replays are refused, across replicas when they share Redis), and the host, deadline and
idempotency key it was signed with are bound to it.
"""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from app.errors import UNAVAILABLE_HEADER, DeploymentUnavailable
from app.main import create_app
from app.replay import MemoryReplayGuard
from app.signing import canonical_target, new_nonce, sign
from tests.app.echo_plugin import Cues, echo_plugin
from tests.conftest import ADMIN_KEY, INTERNAL_SECRET, asgi_client, eventually, make_settings, new_tenant
from tests.lifespan import lifespan

REDIS_URL = "redis://127.0.0.1:6379/0"

PATH = "/api/v1/rag/-/info"


@pytest.fixture
async def signed_app(database_url: str) -> AsyncIterator[Any]:
    app = create_app(make_settings(database_url, FAAS_INTERNAL_SECRET=INTERNAL_SECRET))
    async with lifespan(app) as m:
        yield m.app


async def a_tenant(app: Any) -> str:
    async with asgi_client(app, authorization=f"Bearer {ADMIN_KEY}") as admin:
        return (await new_tenant(admin))["tenant_id"]


def signed(
    tenant: str,
    *,
    method: str = "GET",
    target: str = PATH,
    body: bytes = b"",
    secret: str = INTERNAL_SECRET,
    now: float | None = None,
    request_id: str = "rid-sign-1",
    host: str = "testserver",
    deadline: str | None = None,
    idempotency_key: str | None = None,
) -> dict[str, str]:
    headers = {"X-Tenant-ID": tenant, "X-Request-ID": request_id}
    if deadline is not None:
        headers["X-Faas-Deadline-Ms"] = deadline
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    headers.update(
        sign(
            secret,
            method=method,
            target=target,
            host=host,
            tenant=tenant,
            request_id=request_id,
            body=body,
            deadline=deadline or "",
            idempotency_key=idempotency_key or "",
            now=now,
        )
    )
    return headers


async def get(app: Any, headers: dict[str, str], path: str = PATH) -> httpx.Response:
    async with asgi_client(app) as c:
        return await c.get(path, headers=headers)


async def test_valid_signature_is_trusted_without_an_api_key(signed_app: Any) -> None:
    tenant = await a_tenant(signed_app)
    r = await get(signed_app, signed(tenant))
    assert r.status_code == 200 and r.json()["plugin"] == "rag"
    assert r.headers["x-request-id"] == "rid-sign-1"


async def test_forged_signature_is_401(signed_app: Any) -> None:
    tenant = await a_tenant(signed_app)
    r = await get(signed_app, signed(tenant, secret="not-the-secret-0123456789"))
    assert r.status_code == 401 and "does not match" in r.json()["detail"]


async def test_stale_and_future_signatures_are_401(signed_app: Any) -> None:
    tenant = await a_tenant(signed_app)
    for skew in (-120, 120):
        r = await get(signed_app, signed(tenant, now=time.time() + skew))
        assert r.status_code == 401 and "stale" in r.json()["detail"]


async def test_tenant_swapped_after_signing_is_401(signed_app: Any) -> None:
    tenant, other = await a_tenant(signed_app), await a_tenant(signed_app)
    headers = signed(tenant)
    headers["X-Tenant-ID"] = other
    assert (await get(signed_app, headers)).status_code == 401


async def test_request_id_and_path_are_bound(signed_app: Any) -> None:
    tenant = await a_tenant(signed_app)
    headers = signed(tenant)
    headers["X-Request-ID"] = "rid-other"
    assert (await get(signed_app, headers)).status_code == 401
    headers = signed(tenant, target="/api/v1/ml/-/info")
    assert (await get(signed_app, headers)).status_code == 401
    assert (await get(signed_app, signed(tenant, target="/api/v1/ml/-/info"), "/api/v1/ml/-/info")).status_code == 200


async def test_tampered_body_is_401(database_url: str) -> None:
    settings = make_settings(database_url, FAAS_INTERNAL_SECRET=INTERNAL_SECRET, FAAS_PLUGINS="echo")
    async with lifespan(create_app(settings, plugins=[echo_plugin(Cues())])) as m:
        tenant = await a_tenant(m.app)
        path = "/api/v1/echo/fail"
        body = orjson.dumps({"kind": "not_found", "detail": "reached the service"})
        headers = {**signed(tenant, method="POST", target=path, body=body), "content-type": "application/json"}
        async with asgi_client(m.app) as c:
            r = await c.post(path, content=body, headers=headers)
            assert r.status_code == 404 and r.json()["detail"] == "reached the service"
            r = await c.post(path, content=body.replace(b"not_found", b"conflict"), headers=headers)
            assert r.status_code == 401


async def test_missing_or_bad_timestamp_and_missing_tenant_are_401(signed_app: Any) -> None:
    tenant = await a_tenant(signed_app)
    headers = signed(tenant)
    del headers["X-Faas-Timestamp"]
    assert (await get(signed_app, headers)).status_code == 401
    headers = signed("")
    del headers["X-Tenant-ID"]
    r = await get(signed_app, headers)
    assert r.status_code == 401 and "X-Tenant-ID" in r.json()["detail"]


async def test_without_a_secret_signed_headers_are_not_trusted(app: Any) -> None:
    # The default test app has no FAAS_INTERNAL_SECRET: no verifier, so only an API key authenticates.
    r = await get(app, signed("ten_anyone"))
    assert r.status_code == 401


def test_canonical_target_ignores_percent_encoding_spelling() -> None:
    assert canonical_target("/a%20b?q=x%2Fy&z=") == canonical_target("/a b?q=x/y&z=")
    assert canonical_target("/a?q=a%26b") != canonical_target("/a?q=a&b")


# --- replays, and the fields that change a call's meaning --------------------------------------------------


async def test_a_signed_call_is_accepted_once(signed_app: Any) -> None:
    """The issue's case: one signed DELETE was accepted four times within the window."""
    tenant = await a_tenant(signed_app)
    body = orjson.dumps({"name": "greeting", "template": "hi"})
    async with asgi_client(signed_app) as c:
        created = signed(tenant, method="POST", target="/api/v1/prompts", body=body)
        r = await c.post("/api/v1/prompts", content=body, headers={**created, "content-type": "application/json"})
        assert r.status_code == 201, r.text
        delete = signed(tenant, method="DELETE", target="/api/v1/prompts/greeting")
        assert (await c.delete("/api/v1/prompts/greeting", headers=delete)).status_code == 204
        for _ in range(3):
            r = await c.delete("/api/v1/prompts/greeting", headers=delete)
            assert r.status_code == 401 and "already received" in r.json()["detail"]
        # The same request signed again (what the service client does for a retry) is a new call.
        again = signed(tenant, method="DELETE", target="/api/v1/prompts/greeting")
        assert (await c.delete("/api/v1/prompts/greeting", headers=again)).status_code == 404


async def test_host_deadline_and_idempotency_key_are_bound(signed_app: Any) -> None:
    tenant = await a_tenant(signed_app)
    assert (await get(signed_app, signed(tenant, host="other-deployment:8000"))).status_code == 401
    tampered = [
        ({"deadline": "5000"}, {"X-Faas-Deadline-Ms": "1"}),
        ({}, {"X-Faas-Deadline-Ms": "1"}),
        ({"idempotency_key": "k-1"}, {"Idempotency-Key": "k-2"}),
        ({}, {"Idempotency-Key": "k-2"}),
    ]
    for signed_with, changed in tampered:
        headers = {**signed(tenant, **signed_with), **changed}  # type: ignore[arg-type]
        r = await get(signed_app, headers)
        assert r.status_code == 401 and "does not match" in r.json()["detail"], (signed_with, changed)
    assert (await get(signed_app, signed(tenant, deadline="5000", idempotency_key="k-1"))).status_code == 200


@pytest.mark.parametrize("shared", ["memory", "redis"])
async def test_a_replay_is_refused_by_the_replicas_that_share_the_memory(database_url: str, shared: str) -> None:
    """Per-replica memory refuses a replay to the same replica; with REDIS_URL every replica refuses it."""
    env = {"FAAS_INTERNAL_SECRET": INTERNAL_SECRET}
    if shared == "redis":
        env["REDIS_URL"] = REDIS_URL
    async with (
        lifespan(create_app(make_settings(database_url, **env))) as one,
        lifespan(create_app(make_settings(database_url, **env))) as two,
    ):
        tenant = await a_tenant(one.app)
        headers = signed(tenant)
        assert (await get(one.app, headers)).status_code == 200
        replica = two.app if shared == "redis" else one.app
        r = await get(replica, headers)
        assert r.status_code == 401 and "already received" in r.json()["detail"]


async def test_without_redis_each_replica_still_refuses_replays(database_url: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"redis://127.0.0.1:{s.getsockname()[1]}/0"
    env = {"FAAS_INTERNAL_SECRET": INTERNAL_SECRET, "REDIS_URL": dead, "FAAS_PLUGINS": "prompts"}
    path = "/api/v1/prompts/-/info"
    async with lifespan(create_app(make_settings(database_url, **env))) as m:
        tenant = await a_tenant(m.app)
        headers = signed(tenant, target=path)
        assert (await get(m.app, headers, path)).status_code == 200
        assert (await get(m.app, headers, path)).status_code == 401


async def test_memory_of_signed_calls_is_bounded_and_forgets_what_went_stale() -> None:
    guard = MemoryReplayGuard(capacity=2)
    soon = time.time() + 0.5
    assert await guard.first_time(new_nonce(), soon)
    nonce = new_nonce()
    assert await guard.first_time(nonce, soon) and not await guard.first_time(nonce, soon)
    with pytest.raises(DeploymentUnavailable) as full:
        await guard.first_time(new_nonce(), soon)
    # Full, it refuses with a retryable 503 that the caller's breaker counts, rather than forget a call early.
    assert full.value.status == 503 and full.value.headers["Retry-After"] and full.value.headers[UNAVAILABLE_HEADER]

    async def room_again() -> None:
        try:
            assert await guard.first_time(new_nonce(), time.time() + 60)
        except DeploymentUnavailable as exc:
            raise AssertionError("still full") from exc

    await eventually(room_again, within=5)
    assert len(guard) == 1


# --- the deadline: only a verified call's, and never a 500 -------------------------------------------------


@pytest.fixture
async def echo_app(database_url: str) -> AsyncIterator[tuple[Any, Cues]]:
    cues = Cues()
    settings = make_settings(database_url, FAAS_INTERNAL_SECRET=INTERNAL_SECRET, FAAS_PLUGINS="echo")
    async with lifespan(create_app(settings, plugins=[echo_plugin(cues)])) as m:
        yield m.app, cues


async def test_a_signed_deadline_bounds_the_work(echo_app: tuple[Any, Cues]) -> None:
    app, cues = echo_app
    tenant = await a_tenant(app)
    whoami = "/api/v1/echo/whoami"
    seen = (await get(app, signed(tenant, target=whoami, deadline="700"), whoami)).json()
    assert 0 < seen["deadline_ms"] <= 700
    sleep = "/api/v1/echo/sleep?seconds=2"
    async with asgi_client(app) as c:
        r = await c.post(sleep, headers=signed(tenant, method="POST", target=sleep, deadline="100"))
    assert r.status_code == 504 and r.json()["type"] == "urn:faas:problem:upstream-timeout"
    assert cues.sleeps_cancelled == 1


@pytest.mark.parametrize("deadline", ["9" * 400, "-5", "1e3", "86400001"])
async def test_a_signed_deadline_that_is_not_milliseconds_is_400(echo_app: tuple[Any, Cues], deadline: str) -> None:
    app, _ = echo_app
    tenant = await a_tenant(app)
    whoami = "/api/v1/echo/whoami"
    r = await get(app, signed(tenant, target=whoami, deadline=deadline), whoami)
    assert r.status_code == 400 and r.json()["type"] == "urn:faas:problem:malformed-request"
    assert "X-Faas-Deadline-Ms" in r.json()["detail"]


@pytest.mark.parametrize("timestamp", ["9" * 400, "-" + "9" * 400, "1e9", "", "+123"])
async def test_a_timestamp_that_is_not_a_unix_time_is_401(signed_app: Any, timestamp: str) -> None:
    tenant = await a_tenant(signed_app)
    r = await get(signed_app, {**signed(tenant), "X-Faas-Timestamp": timestamp})
    assert r.status_code == 401 and "X-Faas-Timestamp" in r.json()["detail"]
