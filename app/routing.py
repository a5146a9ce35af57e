"""Routes as data: `api_route` builds a Starlette `Route` that also carries its OpenAPI description.

Endpoints parse with `read_body` / `read_query` (pydantic models, the single source for validation and the
OpenAPI document) and answer with `json_response`. The auth level of a route is declared here and enforced by
`app.auth`, so the security scheme in the document and the check at run time cannot drift apart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from app.errors import InvalidInput, MalformedRequest, UnsupportedMediaType, UpstreamTimeout

Auth = Literal["tenant", "admin", "none"]
M = TypeVar("M", bound=BaseModel)
Endpoint = Callable[[Request], Awaitable[Response]]


class Schema(BaseModel):
    """Base for request/response types: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Operation:
    summary: str
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    auth: Auth = "tenant"
    tags: Sequence[str] = ()
    errors: Sequence[int] = ()
    # Other statuses whose body is the same `response` type (e.g. 503 from a readiness probe).
    also: Sequence[int] = ()
    # Success bodies not described by `response`: media type -> JSON Schema, e.g. {"text/plain": {"type": "string"}}.
    content: dict[str, dict[str, Any]] = field(default_factory=dict)


class ApiRoute(Route):
    """A Route with an `Operation` describing it (one method per route, so the description is exact)."""

    def __init__(
        self, path: str, endpoint: Endpoint, *, method: str, operation: Operation, name: str | None = None
    ) -> None:
        self.method = method.upper()
        self.operation = operation
        self.raw_endpoint = endpoint
        super().__init__(path, _guarded(endpoint, operation.auth), methods=[method], name=name or endpoint.__name__)
        # Every method any route serves on this path, for a truthful `Allow` on 405 (set by `link_allowed`).
        self.allowed: set[str] = set(self.methods or ())

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.methods and scope["method"] not in self.methods:
            allow = ", ".join(sorted(self.allowed))
            raise HTTPException(405, f"{scope['method']} is not allowed here; use {allow}", headers={"Allow": allow})
        await super().handle(scope, receive, send)


def link_allowed(routes: Sequence[BaseRoute]) -> None:
    """Give every ApiRoute the set of methods served on its path (routes are one method each)."""
    by_path: dict[str, set[str]] = {}
    for r in routes:
        if isinstance(r, ApiRoute):
            by_path.setdefault(r.path, set()).update(r.methods or ())
    for r in routes:
        if isinstance(r, ApiRoute):
            r.allowed = by_path[r.path]


def _guarded(endpoint: Endpoint, level: Auth) -> Endpoint:
    from app.auth import authenticate

    async def guarded(request: Request) -> Response:
        principal = await authenticate(request, level)
        if principal is None or principal.deadline is None:
            return await endpoint(request)
        # A signed caller stops waiting at its deadline, so work past it is wasted: stop it here too. This bounds
        # the wait for the response (a stream, once returned, runs as long as the caller reads it).
        limit = asyncio.timeout(principal.deadline)
        try:
            async with limit:
                return await endpoint(request)
        except TimeoutError:
            if not limit.expired():
                raise
            raise UpstreamTimeout("the caller's deadline passed before an answer") from None

    guarded.__name__ = endpoint.__name__
    guarded.__doc__ = endpoint.__doc__
    return guarded


def api_route(method: str, path: str, endpoint: Endpoint, summary: str, **kw: Any) -> ApiRoute:
    return ApiRoute(path, endpoint, method=method, operation=Operation(summary=summary, **kw))


def prefixed(prefix: str, routes: Sequence[BaseRoute]) -> list[BaseRoute]:
    """The same routes under `prefix`, flattened (flat routes keep one template per route for metrics and docs)."""
    out: list[BaseRoute] = []
    for r in routes:
        if isinstance(r, ApiRoute):
            path = (prefix.rstrip("/") + r.path) if r.path != "/" else prefix.rstrip("/")
            out.append(ApiRoute(path, r.raw_endpoint, method=r.method, operation=r.operation, name=r.name))
        else:
            raise TypeError(f"plugin routes must be ApiRoute (got {type(r).__name__}); build them with api_route()")
    return out


async def read_body(request: Request, model: type[M]) -> M:
    ctype = request.headers.get("content-type", "")
    if ctype and ctype.split(";")[0].strip().lower() not in ("application/json", "application/problem+json"):
        raise UnsupportedMediaType(f"send the body as application/json (got {ctype.split(';')[0]})")
    raw = await request.body()
    if not raw.strip():
        raise MalformedRequest("the request body is empty: send a JSON object")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise MalformedRequest(f"the body is not valid JSON: {exc.errors()[0]['msg']}") from None
        raise InvalidInput("the request body failed validation", extra={"errors": _errors(exc)}) from None


def read_query(request: Request, model: type[M]) -> M:
    params: dict[str, Any] = {}
    for key in request.query_params:
        values = request.query_params.getlist(key)
        params[key] = values if len(values) > 1 else values[0]
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        raise InvalidInput("the query string failed validation", extra={"errors": _errors(exc)}) from None


def _errors(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_input=False)
    ]


def json_response(
    data: BaseModel | dict[str, Any] | list[Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    body = data.model_dump_json().encode() if isinstance(data, BaseModel) else orjson.dumps(data)
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def empty_response(status: int = 204) -> Response:
    return Response(status_code=status)
