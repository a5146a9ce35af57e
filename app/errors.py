"""One error hierarchy for every service, rendered as RFC 9457 `application/problem+json`.

Each class has a stable `type` URI and an HTTP status. `problem_response` renders one; `error_from_problem`
turns the same JSON back into the same class, so a remote plugin raises exactly what a direct one would.
Unexpected exceptions render as a 500 problem without a stack trace (the trace goes to the log).

`DeploymentUnavailable` is the one 503 that says "this deployment cannot serve anything right now" (its database
is down, its memory of signed calls is full). It marks its response with `X-Faas-Unavailable`, which a calling
deployment's breaker counts (app.http_client); the marker is not relayed, so a caller two hops away never mistakes
a deeper deployment's outage for its direct upstream's.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from app.context import current_request_id

log = logging.getLogger("faas.errors")
PROBLEM_BASE = "urn:faas:problem:"
PROBLEM_MEDIA_TYPE = "application/problem+json"
UNAVAILABLE_HEADER = "X-Faas-Unavailable"


class ServiceError(Exception):
    """Base of every error a service raises on purpose."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal"
    title: ClassVar[str] = "Internal error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra or {}
        self.headers = headers or {}

    @classmethod
    def type_uri(cls) -> str:
        return PROBLEM_BASE + cls.slug

    def to_problem(self, *, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": self.type_uri(),
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        rid = current_request_id()
        if rid:
            body["request_id"] = rid
        body.update(self.extra)
        return body


class InvalidInput(ServiceError):
    status, slug, title = 422, "invalid-input", "Invalid input"


class MalformedRequest(ServiceError):
    status, slug, title = 400, "malformed-request", "Malformed request"


class Unauthenticated(ServiceError):
    status, slug, title = 401, "unauthenticated", "Authentication required"

    def __init__(self, detail: str | None = None, **kw: Any) -> None:
        kw.setdefault("headers", {"WWW-Authenticate": 'Bearer realm="faas"'})
        super().__init__(detail, **kw)


class Forbidden(ServiceError):
    status, slug, title = 403, "forbidden", "Forbidden"


class NotFound(ServiceError):
    status, slug, title = 404, "not-found", "Not found"


class MethodNotAllowed(ServiceError):
    status, slug, title = 405, "method-not-allowed", "Method not allowed"


class Conflict(ServiceError):
    status, slug, title = 409, "conflict", "Conflict"


class PayloadTooLarge(ServiceError):
    status, slug, title = 413, "payload-too-large", "Request body too large"


class UnsupportedMediaType(ServiceError):
    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"


class RateLimited(ServiceError):
    status, slug, title = 429, "rate-limited", "Rate limited"


class UpstreamFailed(ServiceError):
    status, slug, title = 502, "upstream-failed", "Upstream failed"


class Unavailable(ServiceError):
    status, slug, title = 503, "unavailable", "Service unavailable"


class DeploymentUnavailable(Unavailable):
    """This deployment cannot serve now, whatever the request (`cause` names why, e.g. "database").

    Same `type` as `Unavailable`, so a tenant sees one stable problem and a remote caller rebuilds `Unavailable`
    (without the marker header): only the deployment that is itself unavailable says so.
    """

    def __init__(self, detail: str | None = None, *, cause: str, retry_after: int = 2, **kw: Any) -> None:
        headers = {"Retry-After": str(retry_after), UNAVAILABLE_HEADER: cause, **(kw.pop("headers", None) or {})}
        super().__init__(detail, headers=headers, **kw)


class UpstreamTimeout(ServiceError):
    status, slug, title = 504, "upstream-timeout", "Upstream timed out"


def operator_detail(exc: ServiceError) -> str:
    """The detail for the operator's own records: a public error raised `from` the one it stands for keeps that
    one's words, which the tenant was not shown."""
    cause = exc.__cause__
    return cause.detail if isinstance(cause, ServiceError) else exc.detail


def with_request_id(text: str) -> str:
    """`text` naming the current request id: what a tenant quotes to the operator, who finds the cause in the log."""
    rid = current_request_id()
    return f"{text} (request id {rid})" if rid else text


def _all_subclasses(cls: type[ServiceError]) -> list[type[ServiceError]]:
    out: list[type[ServiceError]] = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


def error_class_for(type_uri: str | None, status: int) -> type[ServiceError]:
    """The class whose `type` matches, else the closest by status (for problems from foreign servers)."""
    classes: list[type[ServiceError]] = [ServiceError, *_all_subclasses(ServiceError)]
    for cls in classes:
        if type_uri and cls.type_uri() == type_uri:
            return cls
    for cls in classes:
        if cls.status == status and cls is not ServiceError:
            return cls
    if 400 <= status < 500:
        return InvalidInput if status == 422 else MalformedRequest
    return UpstreamFailed


_PROBLEM_KEYS = {"type", "title", "status", "detail", "instance", "request_id"}


def error_from_problem(status: int, body: Any, headers: dict[str, str] | None = None) -> ServiceError:
    """Rebuild the exception a remote deployment raised from its problem JSON."""
    if not isinstance(body, dict):
        body = {}
    cls = error_class_for(body.get("type"), status)
    extra = {k: v for k, v in body.items() if k not in _PROBLEM_KEYS}
    kept = {k: v for k, v in (headers or {}).items() if k.lower() in ("retry-after", "www-authenticate")}
    return cls(str(body.get("detail") or cls.title), extra=extra, headers=kept)


def problem_response(error: ServiceError, *, instance: str | None = None) -> Response:
    return Response(
        orjson.dumps(error.to_problem(instance=instance)),
        status_code=error.status,
        headers=error.headers,
        media_type=PROBLEM_MEDIA_TYPE,
    )


_HTTP_STATUS: dict[int, type[ServiceError]] = {
    400: MalformedRequest,
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: InvalidInput,
    429: RateLimited,
    503: Unavailable,
}


async def handle_service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    if exc.status >= 500:
        log.warning("service error %s: %s", exc.slug, exc.detail)
    return problem_response(exc, instance=request.url.path)


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    cls = _HTTP_STATUS.get(exc.status_code, ServiceError)
    detail = exc.detail if exc.detail and exc.detail != cls.title else None
    if exc.status_code == 404 and detail in (None, "Not Found"):
        detail = f"no route matches {request.method} {request.url.path}"
    err = cls(detail, headers=dict(exc.headers or {}))
    return problem_response(err, instance=request.url.path)


def unexpected_problem(method: str, path: str) -> Response:
    """Log the exception being handled (with its trace) and answer a 500 problem without it."""
    log.exception("unhandled error on %s %s", method, path)
    return problem_response(
        ServiceError("an unexpected error occurred; the request id identifies it in the logs"), instance=path
    )


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    return unexpected_problem(request.method, request.url.path)


EXCEPTION_HANDLERS: dict[Any, Any] = {
    ServiceError: handle_service_error,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}
