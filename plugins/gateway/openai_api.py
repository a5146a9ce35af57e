"""The OpenAI-compatible routes (`/v1/chat/completions`, `/v1/embeddings`, `/v1/models`) at their own paths.

They speak OpenAI's dialect end to end, errors included: every failure on these paths, authentication too,
renders as `{"error": {"message", "type", "param", "code"}}` with the status OpenAI would use, so the official
SDKs raise their usual exception classes. Streaming answers are server-sent events; the first chunk is taken
before the response starts, so a failure that early is still a proper HTTP error.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, request_response
from starlette.types import Receive, Scope, Send

from app.auth import tenant_id
from app.codec import dumps
from app.errors import PROBLEM_MEDIA_TYPE, MethodNotAllowed, ServiceError
from app.plugins import service
from app.routing import ApiRoute, Endpoint, Operation, read_body
from plugins.gateway.interface import GATEWAY, GatewayService
from plugins.gateway.messages_api import messages_route
from plugins.gateway.responses_api import create_response, responses_operation
from plugins.gateway.schemas import ChatCompletionIn, EmbeddingsIn, ModelList, OpenAIResponse
from plugins.gateway.vectors import OFF_LOOP_VALUES

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}
_CODES = {401: "invalid_api_key", 403: "permission_denied", 404: "not_found"}


# The names pydantic gives the plain members of a union (`content.str`), which are not fields.
_UNION_MEMBERS = frozenset({"str", "int", "float", "bool", "dict", "list", "none"})


def _param(loc: list[str]) -> str:
    """A field path as OpenAI writes it (`messages[0].content`), without the names pydantic gives the members of a
    union (`input.list[constrained-str]` and `input.str` are `input`)."""
    out = ""
    for part in loc:
        if part.isdigit():
            out += f"[{part}]"
        elif part.isidentifier() and part not in _UNION_MEMBERS:
            out += f".{part}" if out else part
    return out


def _most_specific(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The errors, deepest location first: where a value matches no member of a union, pydantic reports each
    member, and the one that got furthest (`content[0]: needs a 'text' string`) says what is wrong, where the
    others (`content: Input should be a valid string`) only say which shape it was not."""
    return sorted(errors, key=lambda e: -len(e["loc"]))


# OpenAI answers 400 for a body that fails validation, where the platform routes answer 422.
STATUSES = {422: 400}


def openai_error(exc: ServiceError) -> Response:
    status = STATUSES.get(exc.status, exc.status)
    message = exc.detail
    param: str | None = exc.extra.get("param")
    errors = exc.extra.get("errors")
    if errors:
        # A location is [body|query|path, field, ...]; OpenAI's `param` names the field alone.
        errors = _most_specific(errors)
        param = _param(errors[0]["loc"][1:]) or None
        details = "; ".join(f"{_param(e['loc'][1:])}: {e['msg']}" for e in errors[:5])
        message = f"{exc.detail}: {details}"
    # An upstream provider's own error type when it gave one (`requests`, `insufficient_quota`...), else ours; a
    # server-error type on a client-error status contradicts itself, and the status wins.
    upstream_type = exc.extra.get("error_type")
    if upstream_type in ("server_error", "api_error") and status < 500:
        upstream_type = None
    # The OpenAI `error` object beside the RFC 9457 members (hence the problem media type): the SDKs read the
    # former whatever the content type, and a remote gateway client rebuilds the same ServiceError from the latter.
    body = exc.to_problem()
    body["status"] = status  # RFC 9457: the member repeats the status line; the `type` still says which error
    body["error"] = {
        "message": message,
        "type": upstream_type or _TYPES.get(exc.status, "api_error" if exc.status >= 500 else "invalid_request_error"),
        "param": param,
        "code": exc.extra.get("code") or _CODES.get(exc.status) or exc.slug,
    }
    return Response(dumps(body), status_code=status, headers=exc.headers, media_type=PROBLEM_MEDIA_TYPE)


def _openai_errors(endpoint: Endpoint) -> Endpoint:
    async def wrapped(request: Request) -> Response:
        try:
            return await endpoint(request)
        except ServiceError as exc:
            return openai_error(exc)

    wrapped.__name__ = endpoint.__name__
    wrapped.__doc__ = endpoint.__doc__
    return wrapped


class OpenAIRoute(ApiRoute):
    """An ApiRoute whose errors, authentication included, are OpenAI-shaped rather than problem+json."""

    error_statuses = STATUSES

    def __init__(
        self, path: str, endpoint: Endpoint, *, method: str, operation: Operation, name: str | None = None
    ) -> None:
        super().__init__(path, endpoint, method=method, operation=operation, name=name)
        self.app = request_response(_openai_errors(self.endpoint))

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().handle(scope, receive, send)
        except HTTPException as exc:  # a method this path does not serve: raised before the endpoint runs
            if exc.status_code != 405:
                raise
            error = MethodNotAllowed(exc.detail, headers=dict(exc.headers or {}))
            await openai_error(error)(scope, receive, send)


def _service(request: Request) -> GatewayService:
    return service(request, GATEWAY)


async def create_chat_completion(request: Request) -> Response:
    """OpenAI chat completions: non-streaming, or server-sent events with `stream: true`. Tools are supported;
    `stream_options.include_usage` adds the usage chunk. The optional `cache` field (`{"mode": "exact"|"semantic",
    "ttl_seconds"}`, via the SDK's `extra_body`) serves a stored answer at no cost."""
    body = await read_body(request, ChatCompletionIn)
    gateway = _service(request)
    tenant = tenant_id(request)
    if not body.stream:
        result = await gateway.completion(tenant_id=tenant, request=body)
        headers = {"x-cache": "hit"} if result.get("cached") else None
        return Response(dumps(result), media_type="application/json", headers=headers)
    events = await gateway.stream(tenant_id=tenant, request=body)
    return StreamingResponse(
        events, media_type="text/event-stream", headers={"cache-control": "no-cache", "x-accel-buffering": "no"}
    )


async def create_embeddings(request: Request) -> Response:
    """OpenAI embeddings (`encoding_format` float or base64). Without a provider configured, the local
    all-MiniLM-L6-v2 model (384 dimensions) answers."""
    body = await read_body(request, EmbeddingsIn)
    result = await _service(request).embeddings(tenant_id=tenant_id(request), request=body)
    floats = sum(len(d["embedding"]) for d in result["data"] if isinstance(d.get("embedding"), list))
    # Writing a million floats as JSON takes ~0.1 s: not on the event loop.
    content = await asyncio.to_thread(dumps, result) if floats >= OFF_LOOP_VALUES else dumps(result)
    return Response(content, media_type="application/json")


async def list_models(request: Request) -> Response:
    """The models this tenant may use."""
    models = await _service(request).list_models(tenant_id=tenant_id(request))
    return Response(models.model_dump_json(), media_type="application/json")


_CHUNK = {
    "type": "object",
    "description": "An OpenAI chat.completion.chunk",
    "required": ["id", "object", "created", "model", "choices"],
    "properties": {
        "id": {"type": "string"},
        "object": {"const": "chat.completion.chunk"},
        "created": {"type": "integer"},
        "model": {"type": "string"},
        "choices": {"type": "array", "items": {"type": "object"}},
        "usage": {"type": ["object", "null"]},
    },
}
_STREAM_ERROR = {
    "type": "object",
    "description": "A failure after the first chunk: the stream ends with it, without [DONE]",
    "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["message", "type", "code"]}},
}
# One server-sent event (Open API 3.1 documents each event of a stream): its `data` is a chunk as JSON, an error,
# or the final `[DONE]`.
SSE_EVENT: dict[str, Any] = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "event": {"type": "string"},
        "data": {
            "anyOf": [
                {"const": "[DONE]"},
                {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": {"anyOf": [_CHUNK, _STREAM_ERROR]},
                },
            ]
        },
    },
}


def _route(method: str, path: str, endpoint: Endpoint, summary: str, **kw: Any) -> BaseRoute:
    op = Operation(summary=summary, tags=("openai",), errors=(404, 429, 502, 503, 504), **kw)
    return OpenAIRoute(path, endpoint, method=method, operation=op)


def root_routes() -> list[BaseRoute]:
    sse = {"text/event-stream": SSE_EVENT}
    return [
        _route(
            "POST",
            "/v1/chat/completions",
            create_chat_completion,
            "OpenAI-compatible chat completion",
            body=ChatCompletionIn,
            response=OpenAIResponse,
            content=sse,
            serves=("completion", "stream"),
        ),
        _route(
            "POST",
            "/v1/embeddings",
            create_embeddings,
            "OpenAI-compatible embeddings",
            body=EmbeddingsIn,
            response=OpenAIResponse,
            serves=("embeddings", "embed_texts"),
        ),
        _route("GET", "/v1/models", list_models, "Models this tenant may use", response=ModelList),
        OpenAIRoute("/v1/responses", create_response, method="POST", operation=responses_operation()),
        messages_route(),
    ]
