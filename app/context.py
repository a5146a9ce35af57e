"""Per-request context (request id, trace parent, tenant) carried in contextvars.

The middleware sets these for each request; logging, error rendering and the service client read them, so a
request id reaches every log line and every service-to-service call without being passed by hand.
"""

from __future__ import annotations

import os
import re
from contextvars import ContextVar
from dataclasses import dataclass

_request_id: ContextVar[str | None] = ContextVar("faas_request_id", default=None)
_traceparent: ContextVar[str | None] = ContextVar("faas_traceparent", default=None)
_tenant_id: ContextVar[str | None] = ContextVar("faas_tenant_id", default=None)
_deadline: ContextVar[float | None] = ContextVar("faas_deadline", default=None)

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


@dataclass(frozen=True)
class Trace:
    trace_id: str
    span_id: str
    flags: str

    @property
    def header(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"

    def child(self) -> Trace:
        return Trace(self.trace_id, os.urandom(8).hex(), self.flags)


def parse_traceparent(value: str | None) -> Trace | None:
    if not value:
        return None
    m = _TRACEPARENT.match(value.strip().lower())
    if not m or m.group(1) == "0" * 32 or m.group(2) == "0" * 16:
        return None
    return Trace(m.group(1), m.group(2), m.group(3))


def new_trace() -> Trace:
    return Trace(os.urandom(16).hex(), os.urandom(8).hex(), "01")


def valid_request_id(value: str | None) -> str | None:
    return value if value and _REQUEST_ID.match(value) else None


def new_request_id() -> str:
    return os.urandom(12).hex()


def current_request_id() -> str | None:
    return _request_id.get()


def current_traceparent() -> str | None:
    return _traceparent.get()


def current_tenant_id() -> str | None:
    return _tenant_id.get()


def current_deadline() -> float | None:
    """Absolute deadline (time.monotonic()) the caller gave this request, if any."""
    return _deadline.get()


def bind(
    *,
    request_id: str | None = None,
    traceparent: str | None = None,
    tenant_id: str | None = None,
    deadline: float | None = None,
) -> None:
    if request_id is not None:
        _request_id.set(request_id)
    if traceparent is not None:
        _traceparent.set(traceparent)
    if tenant_id is not None:
        _tenant_id.set(tenant_id)
    if deadline is not None:
        _deadline.set(deadline)
