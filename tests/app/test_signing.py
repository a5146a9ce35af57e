"""Signed internal calls on the receiving side: a valid signature vouches for the tenant; a forged, stale,
tenant-swapped, body- or path-tampered call is 401, whatever its headers claim; without a secret none is trusted.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from asgi_lifespan import LifespanManager

from app.main import create_app
from app.signing import canonical_target, sign
from tests.app.echo_plugin import Cues, echo_plugin
from tests.conftest import ADMIN_KEY, INTERNAL_SECRET, asgi_client, make_settings, new_tenant

PATH = "/api/v1/rag/-/info"


@pytest.fixture
async def signed_app(database_url: str) -> AsyncIterator[Any]:
    app = create_app(make_settings(database_url, FAAS_INTERNAL_SECRET=INTERNAL_SECRET))
    async with LifespanManager(app) as m:
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
) -> dict[str, str]:
    headers = {"X-Tenant-ID": tenant, "X-Request-ID": request_id}
    headers.update(sign(secret, method=method, target=target, tenant=tenant, request_id=request_id, body=body, now=now))
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
    async with LifespanManager(create_app(settings, plugins=[echo_plugin(Cues())])) as m:
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
