"""The one outer middleware: request id, W3C trace context, body size limit, access log and metrics.

Pure ASGI (no BaseHTTPMiddleware), so streaming responses pass through untouched and the cost per request
is a few dictionary operations.
"""

from __future__ import annotations

import logging
import time

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import context
from app.errors import PayloadTooLarge, unexpected_problem
from app.metrics import Metrics

access_log = logging.getLogger("faas.access")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int, access_log: bool = True) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = Headers(scope=scope)
        request_id = context.valid_request_id(headers.get("x-request-id")) or context.new_request_id()
        incoming = context.parse_traceparent(headers.get("traceparent"))
        trace = incoming.child() if incoming else context.new_trace()
        context.bind(request_id=request_id, traceparent=trace.header)
        scope["faas.request_id"] = request_id
        scope["faas.trace"] = trace
        status = 500
        responded = False

        async def send_with_ids(message: Message) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start":
                status, responded = message["status"], True
                out = MutableHeaders(scope=message)
                out["x-request-id"] = request_id
                out["traceparent"] = trace.header
            await send(message)

        try:
            length = int(headers.get("content-length") or 0)
        except ValueError:
            length = 0
        limit = self.max_body_bytes
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            # A declared length over the limit is refused before a byte of the body is read, by the route that
            # reads it (so the route's own error shape applies: problem+json, or OpenAI's on /v1/).
            if length > limit:
                raise PayloadTooLarge(f"the request body is {length} bytes; the limit is {limit} (FAAS_MAX_BODY_BYTES)")
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise PayloadTooLarge(f"the request body is over the limit of {limit} bytes (FAAS_MAX_BODY_BYTES)")
            return message

        try:
            await self.app(scope, limited_receive, send_with_ids)
        except Exception:
            if responded:
                raise  # too late for a problem: the server logs it and drops the connection
            # Answered and logged here, once: Starlette's outer error middleware would answer, then re-raise for
            # the server to log the same error a second time.
            await unexpected_problem(scope["method"], scope["path"])(scope, receive, send_with_ids)
        finally:
            self._finish(scope, status, started)

    def _finish(self, scope: Scope, status: int, started: float) -> None:
        elapsed = time.perf_counter() - started
        route = scope.get("route")
        template = getattr(route, "path", None) or "<unmatched>"
        state = scope.get("state") or {}
        metrics: Metrics | None = state.get("metrics")
        if metrics is not None:
            metrics.observe(scope["method"], template, status, elapsed)
        if self.access_log:
            client = scope.get("client")
            access_log.info(
                "%s %s %d",
                scope["method"],
                scope["path"],
                status,
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "route": template,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 3),
                    "client": client[0] if client else None,
                    "trace_id": getattr(scope.get("faas.trace"), "trace_id", None),
                },
            )
