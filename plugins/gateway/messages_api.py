"""`POST /v1/messages`: Anthropic's Messages API in front of every chat model of the gateway, whatever its provider.

A request is translated to an OpenAI chat completion and goes through the gateway service like any other (the same
tenant limits, ledger, cache and fallbacks, in either plugin mode); the answer is translated back to an Anthropic
`message`, or, streamed, to the documented event sequence (`message_start`, then per content block
`content_block_start`, its deltas and `content_block_stop`, then `message_delta` with the stop reason and usage, and
`message_stop`). The rule is the chat route's: what has an equivalent is translated (system, text, images, PDF
documents, tools, `tool_use`/`tool_result`, `tool_choice` with `disable_parallel_tool_use`, `stop_sequences`,
`metadata.user_id`, `output_config`), anything else is refused with a 400 naming it; `cache_control` marks (a
provider-side caching hint that changes no answer) are accepted and not passed on. The tenant key comes as the SDK
sends it, `Authorization: Bearer` or `x-api-key`; errors are Anthropic-shaped (`{"type": "error", "error": {...}}`),
so the SDK raises its usual exception classes.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar

import orjson
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import request_response
from starlette.types import Receive, Scope, Send

from app.auth import tenant_id
from app.codec import dumps
from app.errors import PROBLEM_MEDIA_TYPE, MalformedRequest, ServiceError, UpstreamFailed
from app.plugins import service
from app.routing import ApiRoute, Endpoint, Operation, read_body
from plugins.gateway.interface import GATEWAY
from plugins.gateway.schemas import ChatCompletionIn, MessageBlock, MessageOut, MessagesIn

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "overloaded_error",
}
STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use"}
STOP["content_filter"] = "refusal"
# Fields of the request that need nothing done: `cache_control` is the provider's caching hint, not the answer's.
IGNORED = frozenset({"cache_control"})


def _refuse(param: str, why: str) -> MalformedRequest:
    return MalformedRequest(f"`{param}` {why}", extra={"param": param, "code": "unsupported_parameter"})


# ---- request: Anthropic -> OpenAI -------------------------------------------------------------------------------


def _image(block: MessageBlock, where: str) -> dict[str, Any]:
    src = block.source or {}
    if src.get("type") == "base64":
        url = f"data:{src.get('media_type')};base64,{src.get('data', '')}"
    elif src.get("type") == "url":
        url = str(src.get("url") or "")
    else:
        raise _refuse(f"{where}.source", f"of type {src.get('type')!r} cannot be translated")
    return {"type": "image_url", "image_url": {"url": url}}


def _document(block: MessageBlock, where: str) -> dict[str, Any]:
    src = block.source or {}
    if src.get("type") == "base64" and src.get("media_type") == "application/pdf":
        data = f"data:application/pdf;base64,{src.get('data', '')}"
    elif src.get("type") == "text":
        import base64

        data = "data:text/plain;base64," + base64.b64encode(str(src.get("data") or "").encode()).decode()
    else:
        raise _refuse(f"{where}.source", "cannot be translated (a base64 PDF or a text source can)")
    file: dict[str, Any] = {"file_data": data}
    title = (block.model_extra or {}).get("title")
    if title:
        file["filename"] = str(title)
    return {"type": "file", "file": file}


def _parts(blocks: list[MessageBlock], where: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for j, b in enumerate(blocks):
        here = f"{where}.content.{j}"
        if b.type == "text":
            out.append({"type": "text", "text": b.text or ""})
        elif b.type == "image":
            out.append(_image(b, here))
        elif b.type == "document":
            out.append(_document(b, here))
        else:
            raise _refuse(f"{here}.type", f"{b.type!r} cannot be translated here")
    return out


def _tool_result_content(b: MessageBlock, where: str) -> str | list[dict[str, Any]]:
    if b.content is None or isinstance(b.content, str):
        text = b.content or ""
        return f"Error: {text}" if b.is_error else text
    parts: list[dict[str, Any]] = []
    for k, c in enumerate(b.content):
        if c.get("type") != "text":
            raise _refuse(f"{where}.content.{k}.type", f"{c.get('type')!r} cannot be translated in a tool result")
        parts.append({"type": "text", "text": str(c.get("text") or "")})
    if b.is_error:
        parts.insert(0, {"type": "text", "text": "Error:"})
    return parts


def _turns(req: MessagesIn) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if isinstance(req.system, str):
        if req.system:
            out.append({"role": "system", "content": req.system})
    elif req.system:
        out.append({"role": "system", "content": _parts(req.system, "system")})
    for i, m in enumerate(req.messages):
        where = f"messages.{i}"
        if isinstance(m.content, str):
            out.append({"role": m.role, "content": m.content})
            continue
        if m.role == "assistant":
            text, calls = [], []
            for j, b in enumerate(m.content):
                if b.type == "text":
                    text.append(b.text or "")
                elif b.type == "tool_use":
                    args = orjson.dumps(b.input or {}).decode()
                    calls.append({"id": b.id, "type": "function", "function": {"name": b.name, "arguments": args}})
                else:
                    raise _refuse(f"{where}.content.{j}.type", f"{b.type!r} cannot be translated")
            msg: dict[str, Any] = {"role": "assistant", "content": "".join(text) if text else None}
            if calls:
                msg["tool_calls"] = calls
            out.append(msg)
            continue
        # A user turn: its tool results become `tool` messages (first: they answer the previous turn's calls),
        # the rest one user message.
        rest: list[MessageBlock] = []
        for j, b in enumerate(m.content):
            if b.type == "tool_result":
                out.append(
                    {
                        "role": "tool",
                        "tool_call_id": b.tool_use_id,
                        "content": _tool_result_content(b, f"{where}.content.{j}"),
                    }
                )
            else:
                rest.append(b)
        if rest or not any(b.type == "tool_result" for b in m.content):
            out.append({"role": "user", "content": _parts(rest, where)})
    return out


def chat_request(body: dict[str, Any]) -> ChatCompletionIn:
    """The translated body as the chat route's request: what it refuses (a translation can carry a value that route
    does not take) is the client's 400, never a 500."""
    try:
        return ChatCompletionIn.model_validate(body)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in err["loc"])
        raise MalformedRequest(f"the request cannot be translated: {where}: {err['msg']}") from None


def to_openai(req: MessagesIn) -> dict[str, Any]:
    body: dict[str, Any] = {"model": req.model, "messages": _turns(req), "max_tokens": req.max_tokens}
    for key, value in (req.model_extra or {}).items():
        if key in IGNORED or value is None:
            continue
        if key == "thinking" and isinstance(value, dict) and value.get("type") == "disabled":
            continue
        if key == "output_config" and isinstance(value, dict):
            fmt, effort = value.get("format"), value.get("effort")
            if isinstance(fmt, dict) and fmt.get("type") == "json_schema" and isinstance(fmt.get("schema"), dict):
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "output", "schema": fmt["schema"], "strict": True},
                }
            elif fmt is not None:
                raise _refuse("output_config.format", "cannot be translated (type json_schema with a schema can)")
            if effort is not None:
                body["reasoning_effort"] = effort
            continue
        raise _refuse(key, "cannot be translated for this gateway's models")
    if req.temperature is not None:
        body["temperature"] = req.temperature
    if req.top_p is not None:
        body["top_p"] = req.top_p
    if req.stop_sequences:
        body["stop"] = req.stop_sequences
    if req.tools:
        tools = []
        for i, t in enumerate(req.tools):
            if t.type not in (None, "custom"):
                raise _refuse(f"tools.{i}.type", f"{t.type!r} (a server tool) cannot be translated")
            fn: dict[str, Any] = {
                "name": t.name,
                "parameters": t.input_schema or {"type": "object", "properties": {}},
            }
            if t.description:
                fn["description"] = t.description
            if t.strict is not None:
                fn["strict"] = t.strict
            tools.append({"type": "function", "function": fn})
        body["tools"] = tools
    choice = req.tool_choice
    if choice is not None and req.tools:
        if choice.type == "tool":
            if not choice.name:
                raise _refuse("tool_choice.name", "is required for tool_choice of type tool")
            body["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
        else:
            body["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[choice.type]
        if choice.disable_parallel_tool_use:
            body["parallel_tool_calls"] = False
    user = (req.metadata or {}).get("user_id")
    if user:
        body["user"] = str(user)
    if req.cache is not None:
        body["cache"] = req.cache.model_dump()
    return body


# ---- response: OpenAI -> Anthropic ------------------------------------------------------------------------------


def _message_id() -> str:
    return f"msg_{os.urandom(12).hex()}"


def _tool_input(arguments: Any) -> dict[str, Any]:
    if isinstance(arguments, dict):
        return arguments
    try:
        value = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise UpstreamFailed("the model called a tool with arguments that are not a JSON object")
    return value


def to_message(result: dict[str, Any], model: str) -> dict[str, Any]:
    choice = (result.get("choices") or [{}])[0]
    msg = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    text = msg.get("content")
    if isinstance(text, list):
        text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
    if text:
        content.append({"type": "text", "text": text})
    for call in msg.get("tool_calls") or []:
        fn = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id"),
                "name": fn.get("name"),
                "input": _tool_input(fn.get("arguments")),
            }
        )
    u = result.get("usage") or {}
    return {
        "id": _message_id(),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": STOP.get(choice.get("finish_reason") or "stop", "end_turn"),
        "stop_sequence": None,
        "usage": {
            "input_tokens": int(u.get("prompt_tokens") or 0),
            "output_tokens": int(u.get("completion_tokens") or 0),
        },
    }


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + dumps({"type": kind, **data}) + b"\n\n"


async def sse_data(raw: AsyncIterator[bytes]) -> AsyncIterator[str]:
    """The `data` of each server-sent event of a byte stream (events may arrive split or joined)."""
    buf = b""
    async for piece in raw:
        buf += piece
        while b"\n\n" in buf:
            event, buf = buf.split(b"\n\n", 1)
            lines = [ln[5:].lstrip() for ln in event.split(b"\n") if ln.startswith(b"data:")]
            if lines:
                yield b"\n".join(lines).decode()


async def message_events(raw: AsyncIterator[bytes], model: str) -> AsyncIterator[bytes]:
    """OpenAI chunks (as the gateway streams them) as Anthropic's stream events."""
    start: dict[str, Any] = {
        "id": _message_id(),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 0, "output_tokens": 0},
    }
    yield _event("message_start", {"message": start})
    index = -1  # the open content block, if any
    open_kind: str | None = None
    tools: dict[int, int] = {}  # OpenAI tool call index -> content block index
    finish: str | None = None
    usage: dict[str, Any] = {}
    try:
        async for data in sse_data(raw):
            if data == "[DONE]":
                break
            chunk = orjson.loads(data)
            if "error" in chunk:
                err = chunk["error"] or {}
                if open_kind is not None:
                    yield _event("content_block_stop", {"index": index})
                yield _event("error", {"error": {"type": "api_error", "message": str(err.get("message") or "failed")}})
                return
            if chunk.get("usage"):
                usage = chunk["usage"]
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") or {}
                if delta.get("content"):
                    if open_kind != "text":
                        if open_kind is not None:
                            yield _event("content_block_stop", {"index": index})
                        index, open_kind = index + 1, "text"
                        yield _event(
                            "content_block_start", {"index": index, "content_block": {"type": "text", "text": ""}}
                        )
                    yield _event(
                        "content_block_delta",
                        {"index": index, "delta": {"type": "text_delta", "text": delta["content"]}},
                    )
                for call in delta.get("tool_calls") or ():
                    k = int(call.get("index") or 0)
                    fn = call.get("function") or {}
                    if k not in tools:
                        if open_kind is not None:
                            yield _event("content_block_stop", {"index": index})
                        index, open_kind = index + 1, "tool_use"
                        tools[k] = index
                        block = {"type": "tool_use", "id": call.get("id"), "name": fn.get("name"), "input": {}}
                        yield _event("content_block_start", {"index": index, "content_block": block})
                    if fn.get("arguments"):
                        yield _event(
                            "content_block_delta",
                            {"index": tools[k], "delta": {"type": "input_json_delta", "partial_json": fn["arguments"]}},
                        )
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
    except ServiceError as exc:
        yield _event("error", {"error": {"type": ERROR_TYPES.get(exc.status, "api_error"), "message": exc.detail}})
        return
    finally:
        await raw.aclose()  # type: ignore[attr-defined]
    if open_kind is not None:
        yield _event("content_block_stop", {"index": index})
    out_usage = {
        "input_tokens": int(usage.get("prompt_tokens") or 0),
        "output_tokens": int(usage.get("completion_tokens") or 0),
    }
    stop = STOP.get(finish or "stop", "end_turn")
    yield _event("message_delta", {"delta": {"stop_reason": stop, "stop_sequence": None}, "usage": out_usage})
    yield _event("message_stop", {})


# ---- the route --------------------------------------------------------------------------------------------------


def anthropic_error(exc: ServiceError) -> Response:
    status = 400 if exc.status == 422 else exc.status
    message = exc.detail
    errors = exc.extra.get("errors")
    if errors:
        details = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in errors[:5])
        message = f"{exc.detail}: {details}"
    kind = ERROR_TYPES.get(exc.status, "api_error")
    # Anthropic's error document, whose members the problem document's required ones join (the SDKs read the
    # former whatever the media type; `type` is Anthropic's "error", a valid relative URI reference for RFC 9457).
    body = {**exc.to_problem(), "status": status}
    body.pop("errors", None)
    body.update({"type": "error", "error": {"type": kind, "message": message}})
    return Response(dumps(body), status_code=status, headers=exc.headers, media_type=PROBLEM_MEDIA_TYPE)


def _anthropic_errors(endpoint: Endpoint) -> Endpoint:
    async def wrapped(request: Request) -> Response:
        try:
            return await endpoint(request)
        except ServiceError as exc:
            return anthropic_error(exc)

    wrapped.__name__ = endpoint.__name__
    wrapped.__doc__ = endpoint.__doc__
    return wrapped


class MessagesRoute(ApiRoute):
    """An ApiRoute whose errors, authentication included, are Anthropic-shaped, and which takes the tenant key from
    `x-api-key` as well (what the Anthropic SDKs before 2.0 and many agents send)."""

    error_statuses: ClassVar[Mapping[int, int]] = {422: 400}

    def __init__(
        self, path: str, endpoint: Endpoint, *, method: str, operation: Operation, name: str | None = None
    ) -> None:
        super().__init__(path, endpoint, method=method, operation=operation, name=name)
        self.app = request_response(_anthropic_errors(self.endpoint))

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = scope.get("headers") or []
        if not any(k == b"authorization" for k, _ in headers):
            key = next((v for k, v in headers if k == b"x-api-key"), None)
            if key:
                scope = {**scope, "headers": [*headers, (b"authorization", b"Bearer " + key)]}
        await super().handle(scope, receive, send)


async def create_message(request: Request) -> Response:
    """Anthropic Messages API for any chat model of the gateway: non-streaming, or the documented event stream with
    `stream: true`. Tools and tool results, images, PDF documents and system prompts are translated; a field with no
    equivalent is a 400 naming it."""
    req = await read_body(request, MessagesIn)
    body = to_openai(req)
    gateway = service(request, GATEWAY)
    tenant = tenant_id(request)
    if not req.stream:
        result = await gateway.completion(tenant_id=tenant, request=chat_request(body))
        headers = {"x-cache": "hit"} if result.get("cached") else None
        return Response(dumps(to_message(result, req.model)), media_type="application/json", headers=headers)
    body["stream"] = True
    body["stream_options"] = {"include_usage": True}
    events = await gateway.stream(tenant_id=tenant, request=chat_request(body))
    return StreamingResponse(
        message_events(events, req.model),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )


_STREAM_EVENT: dict[str, Any] = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {
            "enum": [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
                "error",
            ]
        },
        "data": {"type": "string", "contentMediaType": "application/json"},
    },
}


def messages_route() -> MessagesRoute:
    op = Operation(
        summary="Anthropic-compatible messages",
        tags=("anthropic",),
        body=MessagesIn,
        response=MessageOut,
        content={"text/event-stream": _STREAM_EVENT},
        errors=(404, 429, 502, 503, 504),
        serves=("completion", "stream"),
    )
    return MessagesRoute("/v1/messages", create_message, method="POST", operation=op)
