"""Signed service-to-service calls: the caller signs, the receiver verifies before trusting `X-Tenant-ID`.

The signature is HMAC-SHA256 with `FAAS_INTERNAL_SECRET` over a canonical form of everything that gives the call
its meaning: the method, the path with its query string (decoded, so either side's percent-encoding does not
matter), the `Host` it was sent to, the tenant, the request id, a Unix timestamp, a random nonce, the deadline
(`X-Faas-Deadline-Ms`), the `Idempotency-Key` and the SHA-256 of the body. Each field is length-prefixed, so no
value can shift into its neighbour. The receiver recomputes it from what it actually received: a changed field
fails, and a timestamp outside the freshness window fails too.

Inside the window a call is accepted once: after the signature verifies, its nonce goes to a `ReplayGuard`
(app.replay), and a nonce seen before is refused. The caller signs every try afresh (a retry is a new call with
a new nonce, never a replay). Only a verified call's deadline is honoured; an outside client's is ignored.
`InternalVerifier` is what `app.auth` calls through `request.state.internal_verifier`. A reverse proxy between
two deployments must pass `Host` through unchanged (nginx: `proxy_set_header Host $host`).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import time
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlencode

from starlette.requests import Request

from app.errors import MalformedRequest, Unauthenticated
from app.replay import MemoryReplayGuard, ReplayGuard

SIGNATURE_HEADER = "X-Faas-Signature"
TIMESTAMP_HEADER = "X-Faas-Timestamp"
NONCE_HEADER = "X-Faas-Nonce"
TENANT_HEADER = "X-Tenant-ID"
REQUEST_ID_HEADER = "X-Request-ID"
DEADLINE_HEADER = "X-Faas-Deadline-Ms"
IDEMPOTENCY_HEADER = "Idempotency-Key"
VERSION = "v2"
DEFAULT_WINDOW = 60.0
# A deadline is the caller's remaining time; a day is far past any call's, and keeps the arithmetic in range.
MAX_DEADLINE_MS = 86_400_000

_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")
_NONCE = re.compile(r"^[0-9a-f]{32}$")
_DEADLINE = re.compile(r"^[0-9]{1,9}$")


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def new_nonce() -> str:
    return os.urandom(16).hex()


def canonical_target(target: str) -> str:
    """Path and query in one spelling whatever the percent-encoding on the wire (HTTP clients re-quote URLs):
    the decoded path, and the decoded query pairs re-encoded, in order. It means what the receiver reads."""
    path, _, query = target.partition("?")
    out = unquote(path)
    if query:
        out += "?" + urlencode(parse_qsl(query, keep_blank_values=True))
    return out


def canonical(
    method: str,
    target: str,
    *,
    host: str,
    tenant: str,
    request_id: str,
    timestamp: str,
    nonce: str,
    deadline: str,
    idempotency_key: str,
    digest: str,
) -> bytes:
    fields = (
        VERSION,
        method.upper(),
        canonical_target(target),
        host.lower(),
        tenant,
        request_id,
        timestamp,
        nonce,
        deadline,
        idempotency_key,
        digest,
    )
    return "".join(f"{len(f)}:{f}\n" for f in fields).encode()


def signature(secret: str, message: bytes) -> str:
    return f"{VERSION}={hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()}"


def sign(
    secret: str,
    *,
    method: str,
    target: str,
    host: str,
    tenant: str,
    request_id: str,
    body: bytes,
    deadline: str = "",
    idempotency_key: str = "",
    now: float | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The timestamp, nonce and signature headers for one try (`target` is path plus query, as sent)."""
    timestamp = str(int(time.time() if now is None else now))
    nonce = nonce or new_nonce()
    message = canonical(
        method,
        target,
        host=host,
        tenant=tenant,
        request_id=request_id,
        timestamp=timestamp,
        nonce=nonce,
        deadline=deadline,
        idempotency_key=idempotency_key,
        digest=body_digest(body),
    )
    return {TIMESTAMP_HEADER: timestamp, NONCE_HEADER: nonce, SIGNATURE_HEADER: signature(secret, message)}


def request_target(request: Request) -> str:
    """Path and query as received (`canonical` normalises the encoding)."""
    raw = request.scope.get("raw_path") or request.scope["path"].encode()
    query = request.scope.get("query_string") or b""
    target = raw.decode("latin-1")
    return f"{target}?{query.decode('latin-1')}" if query else target


@dataclass(frozen=True)
class Verified:
    """What a valid signature vouches for: the tenant, and the caller's remaining time (seconds) if it sent one."""

    tenant_id: str
    deadline: float | None = None


class InternalVerifier:
    """Verifies signed internal calls and refuses one already seen; `verify` returns what the call vouches for."""

    def __init__(self, secret: str, *, window: float = DEFAULT_WINDOW, seen: ReplayGuard | None = None) -> None:
        self._secret = secret
        self.window = window
        self.seen = seen or MemoryReplayGuard()

    def is_signed(self, request: Request) -> bool:
        return SIGNATURE_HEADER.lower() in request.headers

    async def verify(self, request: Request) -> Verified:
        headers = request.headers
        raw_ts = headers.get(TIMESTAMP_HEADER, "")
        tenant = headers.get(TENANT_HEADER, "")
        nonce = headers.get(NONCE_HEADER, "")
        if not _TIMESTAMP.match(raw_ts):
            raise Unauthenticated(f"internal call refused: {TIMESTAMP_HEADER} is missing or not a Unix time")
        timestamp = int(raw_ts)
        if abs(time.time() - timestamp) > self.window:
            raise Unauthenticated("internal call refused: the signature is stale (check the clocks, or a replay)")
        if not tenant:
            raise Unauthenticated(f"internal call refused: a signed call must carry {TENANT_HEADER}")
        if not _NONCE.match(nonce):
            raise Unauthenticated(f"internal call refused: {NONCE_HEADER} is missing or malformed")
        deadline = headers.get(DEADLINE_HEADER, "")
        message = canonical(
            request.method,
            request_target(request),
            host=headers.get("host", ""),
            tenant=tenant,
            request_id=headers.get(REQUEST_ID_HEADER, ""),
            timestamp=raw_ts,
            nonce=nonce,
            deadline=deadline,
            idempotency_key=headers.get(IDEMPOTENCY_HEADER, ""),
            digest=body_digest(await request.body()),
        )
        given = headers.get(SIGNATURE_HEADER, "").encode("latin-1")
        if not hmac.compare_digest(given, signature(self._secret, message).encode()):
            raise Unauthenticated("internal call refused: the signature does not match (FAAS_INTERNAL_SECRET differs?)")
        # Only a call that verifies is remembered, so nobody without the secret can fill the memory.
        if not await self.seen.first_time(nonce, timestamp + self.window):
            raise Unauthenticated("internal call refused: this signed call was already received (a replay)")
        if not deadline:
            return Verified(tenant)
        if not _DEADLINE.match(deadline) or int(deadline) > MAX_DEADLINE_MS:
            raise MalformedRequest(f"{DEADLINE_HEADER} must be whole milliseconds up to {MAX_DEADLINE_MS}")
        return Verified(tenant, int(deadline) / 1000)
