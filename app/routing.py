"""Routes as data: `api_route` builds a Starlette `Route` that also carries its OpenAPI description.

Endpoints parse with `read_path` / `read_body` / `read_query` (pydantic models, the single source for validation
and for the OpenAPI document) and answer with `json_response`. A route with path parameters must declare the
schema they parse into (checked when the route is built), so a bad one is the 422 the document promises. The auth
level of a route is declared here and enforced by `app.auth`, so the security scheme in the document and the check
at run time cannot drift apart. `mount` gives a plugin's routes their prefix and their namespace: the route name,
which is also the OpenAPI operationId, is `<namespace>.<endpoint>`, so two plugins never collide.

A path segment starting with `-` is never a path parameter: `/-/...` is each plugin's own space (`/-/info`,
`/-/stats`), so `PUT .../-/info` is a 405 for that route rather than a write to an object named `-`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, compile_path
from starlette.types import Receive, Scope, Send

from app import codec
from app.auth import Auth, authenticate
from app.errors import InvalidInput, MalformedRequest, PayloadTooLarge, UnsupportedMediaType, UpstreamTimeout
from app.json_limits import json_values

M = TypeVar("M", bound=BaseModel)
Endpoint = Callable[[Request], Awaitable[Response]]
PATH_PARAM = re.compile(r"{([^}:]+)(?::[^}]+)?}")


class _Segment(Convertor[str]):
    """One path segment that does not start with `-` (the default for an ApiRoute's parameters)."""

    regex = "[^/-][^/]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("segment", _Segment())


@dataclass(frozen=True)
class Operation:
    summary: str
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    path: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    auth: Auth = "tenant"
    tags: Sequence[str] = ()
    errors: Sequence[int] = ()
    # Other statuses whose body is the same `response` type (e.g. 503 from a readiness probe).
    also: Sequence[int] = ()
    # Success bodies not described by `response`: media type -> JSON Schema, e.g. {"text/plain": {"type": "string"}}.
    content: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Request bodies other than JSON `body` the route also takes: media type -> JSON Schema (a multipart form).
    forms: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The service-interface methods this route serves (a remote implementation calls them over it); empty means
    # the method named like the endpoint. Checked against each plugin's interface by tests/test_layout.py.
    serves: tuple[str, ...] = ()


class ApiRoute(Route):
    """A Route with an `Operation` describing it (one method per route, so the description is exact)."""

    # Error statuses this route answers with another status (the OpenAPI document lists the one sent).
    error_statuses: ClassVar[Mapping[int, int]] = {}

    def __init__(
        self, path: str, endpoint: Endpoint, *, method: str, operation: Operation, name: str | None = None
    ) -> None:
        params = set(PATH_PARAM.findall(path))
        declared = set(operation.path.model_fields) if operation.path is not None else set()
        if params != declared:
            raise TypeError(
                f"{method} {path}: path parameters {sorted(params)} must be declared exactly by path=<Schema> "
                f"(it declares {sorted(declared)})"
            )
        self.method = method.upper()
        self.operation = operation
        self.raw_endpoint = endpoint
        super().__init__(path, _guarded(endpoint, operation.auth), methods=[method], name=name or endpoint.__name__)
        # Matched with the `segment` convertor (the path and its documentation keep the plain `{name}`).
        self.path_regex, _, self.param_convertors = compile_path(re.sub(r"{([^}:]+)}", r"{\1:segment}", path))
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


def api_route(method: str, template: str, endpoint: Endpoint, summary: str, **kw: Any) -> ApiRoute:
    """A route for `method template`; `kw` are the `Operation` fields (body, query, path, response, ...)."""
    return ApiRoute(template, endpoint, method=method, operation=Operation(summary=summary, **kw))


def mount(prefix: str, namespace: str, routes: Sequence[BaseRoute]) -> list[ApiRoute]:
    """The same routes under `prefix`, named `<namespace>.<endpoint>`, flattened (flat routes keep one template
    per route for metrics and docs)."""
    out: list[ApiRoute] = []
    for r in routes:
        if not isinstance(r, ApiRoute):
            raise TypeError(f"routes must be ApiRoute (got {type(r).__name__}); build them with api_route()")
        path = (prefix.rstrip("/") + r.path) if r.path != "/" else (prefix.rstrip("/") or "/")
        operation = r.operation if r.operation.serves else replace(r.operation, serves=(r.raw_endpoint.__name__,))
        name = f"{namespace}.{r.raw_endpoint.__name__}"
        out.append(type(r)(path, r.raw_endpoint, method=r.method, operation=operation, name=name))
    return out


def read_path(request: Request, model: type[M]) -> M:
    """The path parameters as `model`, or InvalidInput (422) naming the parameter and the rule it breaks."""
    return parse_path(model, request.path_params)


def parse_path(model: type[M], params: Mapping[str, Any]) -> M:
    """`params` as the path schema `model`: what `read_path` does, for a service or remote client that is handed
    path parts directly and must refuse the same values the route would (before building a URL from them)."""
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        raise InvalidInput("a path parameter failed validation", extra={"errors": _errors(exc, "path")}) from None


async def read_body(request: Request, model: type[M]) -> M:
    """The JSON body as `model`. A large body is first counted on its bytes: at most MAX_JSON_VALUES values (413
    past it), because parsing holds the interpreter (a worker thread would not free the event loop: the parser
    keeps the GIL) for as long as the values take to build, ~40 ms for 100,000 on this project's machines, against
    0.76 s for the 600,000 a 7 MB body can hold."""
    ctype = request.headers.get("content-type", "")
    if ctype and ctype.split(";")[0].strip().lower() not in ("application/json", "application/problem+json"):
        raise UnsupportedMediaType(f"send the body as application/json (got {ctype.split(';')[0]})")
    raw = await request.body()
    if not raw.strip():
        raise MalformedRequest("the request body is empty: send a JSON object")
    if len(raw) > COUNTED_BODY_BYTES:
        return _validate_large(model, raw)
    return _validate(model, raw)


# Bodies above this are counted before they are parsed (a smaller one cannot hold MAX_JSON_VALUES values).
COUNTED_BODY_BYTES = 64 * 1024
# JSON values one body may hold: parsing cost follows the values, not the bytes (a list's `max_length` is checked
# only after every item was built), so a 10 MB body of tiny values is refused before it is parsed.
MAX_JSON_VALUES = 100_000


def _validate_large(model: type[M], raw: bytes) -> M:
    if json_values(raw, limit=MAX_JSON_VALUES) > MAX_JSON_VALUES:
        raise PayloadTooLarge(
            f"the request body holds more than {MAX_JSON_VALUES:,} JSON values: send fewer items per request",
            extra={"code": "too_many_values", "limit": MAX_JSON_VALUES},
        )
    return _validate(model, raw)


def _validate(model: type[M], raw: bytes) -> M:
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise MalformedRequest(f"the body is not valid JSON: {exc.errors()[0]['msg']}") from None
        raise InvalidInput("the request body failed validation", extra={"errors": _errors(exc, "body")}) from None


def read_query(request: Request, model: type[M]) -> M:
    params: dict[str, Any] = {}
    for key in request.query_params:
        values = request.query_params.getlist(key)
        params[key] = values if len(values) > 1 else values[0]
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        raise InvalidInput("the query string failed validation", extra={"errors": _errors(exc, "query")}) from None


def _errors(exc: ValidationError, where: str) -> list[dict[str, Any]]:
    return [
        {"loc": [where, *(str(p) for p in e["loc"])], "msg": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_input=False)
    ]


def json_response(
    data: BaseModel | dict[str, Any] | list[Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    body = codec.dump_model(data) if isinstance(data, BaseModel) else codec.dumps(data)
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def empty_response(status: int = 204) -> Response:
    return Response(status_code=status)
