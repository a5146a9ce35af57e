"""Signed service-to-service calls: the caller signs, the receiver verifies before trusting `X-Tenant-ID`.

The signature is HMAC-SHA256 with `FAAS_INTERNAL_SECRET` over a canonical string of the method, the path with
its query string (decoded, so either side's percent-encoding does not matter), the tenant, the request id, a
Unix timestamp and the SHA-256 of the body. The receiver recomputes it from what it actually received, so a
changed tenant, path, body or request id fails, and a timestamp outside the freshness window fails too.
`InternalVerifier` is what `app.auth` calls through `request.state.internal_verifier`.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import parse_qsl, unquote, urlencode

from starlette.requests import Request

from app.errors import Unauthenticated

SIGNATURE_HEADER = "X-Faas-Signature"
TIMESTAMP_HEADER = "X-Faas-Timestamp"
TENANT_HEADER = "X-Tenant-ID"
REQUEST_ID_HEADER = "X-Request-ID"
DEADLINE_HEADER = "X-Faas-Deadline-Ms"
VERSION = "v1"
DEFAULT_WINDOW = 60.0


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def canonical_target(target: str) -> str:
    """Path and query in one spelling whatever the percent-encoding on the wire (HTTP clients re-quote URLs):
    the decoded path, and the decoded query pairs re-encoded, in order. It means what the receiver reads."""
    path, _, query = target.partition("?")
    out = unquote(path)
    if query:
        out += "?" + urlencode(parse_qsl(query, keep_blank_values=True))
    return out


def canonical(method: str, target: str, tenant: str, request_id: str, timestamp: str, digest: str) -> bytes:
    parts = (VERSION, method.upper(), canonical_target(target), tenant, request_id, timestamp, digest)
    return "\n".join(parts).encode()


def signature(secret: str, message: bytes) -> str:
    return f"{VERSION}={hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()}"


def sign(
    secret: str,
    *,
    method: str,
    target: str,
    tenant: str,
    request_id: str,
    body: bytes,
    now: float | None = None,
) -> dict[str, str]:
    """The timestamp and signature headers for one request (`target` is path plus query, as sent)."""
    timestamp = str(int(time.time() if now is None else now))
    message = canonical(method, target, tenant, request_id, timestamp, body_digest(body))
    return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: signature(secret, message)}


def request_target(request: Request) -> str:
    """Path and query as received (`canonical` normalises the encoding)."""
    raw = request.scope.get("raw_path") or request.scope["path"].encode()
    query = request.scope.get("query_string") or b""
    target = raw.decode("latin-1")
    return f"{target}?{query.decode('latin-1')}" if query else target


class InternalVerifier:
    """Verifies signed internal calls; `verify` returns the tenant the signature vouches for."""

    def __init__(self, secret: str, *, window: float = DEFAULT_WINDOW) -> None:
        self._secret = secret
        self.window = window

    def is_signed(self, request: Request) -> bool:
        return SIGNATURE_HEADER.lower() in request.headers

    async def verify(self, request: Request) -> str:
        headers = request.headers
        given = headers.get(SIGNATURE_HEADER, "")
        raw_ts = headers.get(TIMESTAMP_HEADER, "")
        tenant = headers.get(TENANT_HEADER, "")
        try:
            timestamp = int(raw_ts)
        except ValueError:
            raise Unauthenticated(f"internal call refused: {TIMESTAMP_HEADER} is missing or not a number") from None
        if abs(time.time() - timestamp) > self.window:
            raise Unauthenticated("internal call refused: the signature is stale (check the clocks, or a replay)")
        if not tenant:
            raise Unauthenticated(f"internal call refused: a signed call must carry {TENANT_HEADER}")
        body = await request.body()
        message = canonical(
            request.method,
            request_target(request),
            tenant,
            headers.get(REQUEST_ID_HEADER, ""),
            raw_ts,
            body_digest(body),
        )
        if not hmac.compare_digest(given.encode(), signature(self._secret, message).encode()):
            raise Unauthenticated("internal call refused: the signature does not match (FAAS_INTERNAL_SECRET differs?)")
        return tenant
