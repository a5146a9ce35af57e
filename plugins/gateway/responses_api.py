"""`POST /v1/responses`: OpenAI's Responses API, stateless, for every chat model of the gateway.

A request (`input` as text or items, `instructions`, function tools, `tool_choice`, `text.format`,
`reasoning.effort`, `max_output_tokens`) is translated to a chat completion and goes through the gateway service like
any other (limits, ledger, cache, fallbacks, either plugin mode); the answer comes back as a `response` object, or,
streamed, as the typed events (`response.created`, `response.in_progress`, `response.output_item.added`,
`response.content_part.added`, `response.output_text.delta`/`.done`, `response.function_call_arguments.delta`/`.done`,
`response.content_part.done`, `response.output_item.done`, `response.completed`), each with its `sequence_number`.
Nothing is stored: `store: true` and `previous_response_id` are refused with a 400 naming them, as is any field with
no equivalent. Errors are OpenAI-shaped, as on the chat route.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from app.auth import tenant_id
from app.codec import dumps
from app.errors import MalformedRequest, ServiceError
from app.plugins import service
from app.routing import Operation, read_body
from plugins.gateway.interface import GATEWAY
from plugins.gateway.messages_api import chat_request, sse_data
from plugins.gateway.schemas import OpenAIResponse, ResponseInputPart, ResponsesIn

# Fields at a value that asks for nothing.
NEUTRAL: dict[str, tuple[Any, ...]] = {"truncation": ("disabled",), "background": (False,), "include": ([],)}
NEUTRAL["metadata"] = ({},)


def _refuse(param: str, why: str) -> MalformedRequest:
    return MalformedRequest(f"`{param}` {why}", extra={"param": param, "code": "unsupported_parameter"})


def _new(prefix: str) -> str:
    return f"{prefix}_{os.urandom(12).hex()}"


# ---- request: Responses -> chat completion ----------------------------------------------------------------------


def _parts(parts: list[ResponseInputPart], where: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for j, p in enumerate(parts):
        if p.type in ("input_text", "output_text", "text"):
            out.append({"type": "text", "text": p.text or ""})
        elif p.type == "input_image" and p.image_url:
            out.append({"type": "image_url", "image_url": {"url": p.image_url}})
        elif p.type == "input_file" and p.file_data:
            file = {"file_data": p.file_data, **({"filename": p.filename} if p.filename else {})}
            out.append({"type": "file", "file": file})
        else:
            raise _refuse(f"{where}[{j}]", f"(a {p.type!r} part) cannot be translated (file ids are not stored here)")
    return out


def _content(content: str | list[ResponseInputPart] | None, where: str) -> str | list[dict[str, Any]]:
    if content is None or isinstance(content, str):
        return content or ""
    return _parts(content, where)


def _messages(req: ResponsesIn) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if req.instructions:
        out.append({"role": "system", "content": req.instructions})
    if isinstance(req.input, str):
        out.append({"role": "user", "content": req.input})
        return out
    for i, item in enumerate(req.input):
        where = f"input[{i}]"
        kind = item.type or ("message" if item.role else None)
        if kind == "message" and item.role:
            content = _content(item.content, f"{where}.content")
            if item.role == "assistant" and isinstance(content, list):
                content = "".join(p.get("text", "") for p in content if p.get("type") == "text")
            out.append({"role": item.role, "content": content})
        elif kind == "function_call":
            call = {
                "id": item.call_id,
                "type": "function",
                "function": {"name": item.name, "arguments": item.arguments or "{}"},
            }
            last = out[-1] if out else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.output
            text = output if isinstance(output, str) else _parts(output or [], f"{where}.output")
            out.append({"role": "tool", "tool_call_id": item.call_id, "content": text})
        else:
            raise _refuse(f"{where}.type", f"{kind!r} cannot be translated (stateless: no stored items)")
    return out


def to_chat(req: ResponsesIn) -> dict[str, Any]:
    if req.store:
        raise _refuse("store", "cannot be true: this gateway keeps no responses (send store: false)")
    for key, value in (req.model_extra or {}).items():
        if value is None or (key in NEUTRAL and value in NEUTRAL[key]):
            continue
        if key == "previous_response_id":
            raise _refuse(key, "cannot be used: this gateway keeps no responses (send the whole conversation)")
        raise _refuse(key, "cannot be translated for this gateway's models")
    body: dict[str, Any] = {"model": req.model, "messages": _messages(req)}
    if req.max_output_tokens is not None:
        body["max_tokens"] = req.max_output_tokens
    for key in ("temperature", "top_p", "parallel_tool_calls", "user"):
        if getattr(req, key) is not None:
            body[key] = getattr(req, key)
    if req.tools:
        tools = []
        for i, t in enumerate(req.tools):
            if t.type != "function" or not t.name:
                raise _refuse(f"tools[{i}].type", f"{t.type!r} (a hosted tool) cannot be translated")
            fn: dict[str, Any] = {"name": t.name, "parameters": t.parameters or {"type": "object", "properties": {}}}
            if t.description:
                fn["description"] = t.description
            if t.strict is not None:
                fn["strict"] = t.strict
            tools.append({"type": "function", "function": fn})
        body["tools"] = tools
    choice = req.tool_choice
    if isinstance(choice, str):
        body["tool_choice"] = choice
    elif isinstance(choice, dict):
        if choice.get("type") != "function" or not choice.get("name"):
            raise _refuse("tool_choice", "cannot be translated (a function by name, auto, none or required can)")
        body["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    text = req.text or {}
    fmt = text.get("format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt},
        }
    elif isinstance(fmt, dict) and fmt.get("type") == "json_object":
        body["response_format"] = {"type": "json_object"}
    elif fmt is not None and not (isinstance(fmt, dict) and fmt.get("type") == "text"):
        raise _refuse("text.format", "cannot be translated")
    if text.get("verbosity") is not None:
        body["verbosity"] = text["verbosity"]
    effort = (req.reasoning or {}).get("effort")
    if effort is not None:
        body["reasoning_effort"] = effort
    if req.cache is not None:
        body["cache"] = req.cache.model_dump()
    return body


# ---- response: chat completion -> Responses ---------------------------------------------------------------------


def _shell(req: ResponsesIn, rid: str, status: str) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "model": req.model,
        "output": [],
        "error": None,
        "incomplete_details": None,
        "instructions": req.instructions,
        "metadata": {},
        "parallel_tool_calls": req.parallel_tool_calls is not False,
        "temperature": req.temperature,
        "top_p": req.top_p,
        "max_output_tokens": req.max_output_tokens,
        "tool_choice": req.tool_choice or "auto",
        "tools": [t.model_dump(exclude_none=True) for t in req.tools or []],
        "store": False,
        "usage": None,
    }


def _usage(u: dict[str, Any]) -> dict[str, Any]:
    i, o = int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0)
    return {
        "input_tokens": i,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": o,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": i + o,
    }


def _finish(resp: dict[str, Any], finish: str | None) -> None:
    if finish == "length":
        resp["status"] = "incomplete"
        resp["incomplete_details"] = {"reason": "max_output_tokens"}
    elif finish == "content_filter":
        resp["status"] = "incomplete"
        resp["incomplete_details"] = {"reason": "content_filter"}
    else:
        resp["status"] = "completed"


def _text_item(text: str, status: str = "completed") -> dict[str, Any]:
    return {
        "type": "message",
        "id": _new("msg"),
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def to_response(req: ResponsesIn, result: dict[str, Any]) -> dict[str, Any]:
    resp = _shell(req, _new("resp"), "completed")
    choice = (result.get("choices") or [{}])[0]
    msg = choice.get("message") or {}
    text = msg.get("content")
    if text:
        resp["output"].append(_text_item(str(text)))
    for call in msg.get("tool_calls") or []:
        fn = call.get("function") or {}
        resp["output"].append(
            {
                "type": "function_call",
                "id": _new("fc"),
                "call_id": call.get("id"),
                "name": fn.get("name"),
                "arguments": fn.get("arguments") or "",
                "status": "completed",
            }
        )
    _finish(resp, choice.get("finish_reason"))
    resp["usage"] = _usage(result.get("usage") or {})
    return resp


class _Events:
    def __init__(self) -> None:
        self.seq = 0

    def __call__(self, kind: str, data: dict[str, Any]) -> bytes:
        body = {"type": kind, "sequence_number": self.seq, **data}
        self.seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + dumps(body) + b"\n\n"


async def response_events(req: ResponsesIn, raw: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    ev = _Events()
    resp = _shell(req, _new("resp"), "in_progress")
    yield ev("response.created", {"response": resp})
    yield ev("response.in_progress", {"response": resp})
    output: list[dict[str, Any]] = []
    text_item: dict[str, Any] | None = None  # the message item being written
    text = ""
    calls: dict[int, dict[str, Any]] = {}  # chat tool call index -> function_call item
    finish: str | None = None
    usage: dict[str, Any] = {}

    def close_text() -> list[bytes]:
        nonlocal text_item
        if text_item is None:
            return []
        idx = output.index(text_item)
        part = {"type": "output_text", "text": text, "annotations": []}
        text_item["content"] = [part]
        text_item["status"] = "completed"
        done = [
            ev(
                "response.output_text.done",
                {"item_id": text_item["id"], "output_index": idx, "content_index": 0, "text": text, "logprobs": []},
            ),
            ev(
                "response.content_part.done",
                {"item_id": text_item["id"], "output_index": idx, "content_index": 0, "part": part},
            ),
            ev("response.output_item.done", {"output_index": idx, "item": text_item}),
        ]
        text_item = None
        return done

    try:
        async for data in sse_data(raw):
            if data == "[DONE]":
                break
            chunk = orjson.loads(data)
            if "error" in chunk:
                err = chunk["error"] or {}
                resp.update(status="failed", output=output)
                resp["error"] = {"code": "server_error", "message": str(err.get("message") or "failed")}
                yield ev("response.failed", {"response": resp})
                return
            if chunk.get("usage"):
                usage = chunk["usage"]
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") or {}
                if delta.get("content"):
                    if text_item is None:
                        text_item = {
                            "type": "message",
                            "id": _new("msg"),
                            "status": "in_progress",
                            "role": "assistant",
                            "content": [],
                        }
                        output.append(text_item)
                        idx = len(output) - 1
                        yield ev("response.output_item.added", {"output_index": idx, "item": text_item})
                        yield ev(
                            "response.content_part.added",
                            {
                                "item_id": text_item["id"],
                                "output_index": idx,
                                "content_index": 0,
                                "part": {"type": "output_text", "text": "", "annotations": []},
                            },
                        )
                    text += delta["content"]
                    yield ev(
                        "response.output_text.delta",
                        {
                            "item_id": text_item["id"],
                            "output_index": output.index(text_item),
                            "content_index": 0,
                            "delta": delta["content"],
                            "logprobs": [],
                        },
                    )
                for call in delta.get("tool_calls") or ():
                    k = int(call.get("index") or 0)
                    fn = call.get("function") or {}
                    if k not in calls:
                        for b in close_text():
                            yield b
                        item = {
                            "type": "function_call",
                            "id": _new("fc"),
                            "call_id": call.get("id"),
                            "name": fn.get("name"),
                            "arguments": "",
                            "status": "in_progress",
                        }
                        calls[k] = item
                        output.append(item)
                        yield ev("response.output_item.added", {"output_index": len(output) - 1, "item": item})
                    item = calls[k]
                    if fn.get("arguments"):
                        item["arguments"] += fn["arguments"]
                        yield ev(
                            "response.function_call_arguments.delta",
                            {"item_id": item["id"], "output_index": output.index(item), "delta": fn["arguments"]},
                        )
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
    except ServiceError as exc:
        resp.update(status="failed", output=output)
        resp["error"] = {"code": "server_error", "message": exc.detail}
        yield ev("response.failed", {"response": resp})
        return
    finally:
        await raw.aclose()  # type: ignore[attr-defined]
    for b in close_text():
        yield b
    for item in calls.values():
        item["status"] = "completed"
        idx = output.index(item)
        yield ev(
            "response.function_call_arguments.done",
            {"item_id": item["id"], "output_index": idx, "arguments": item["arguments"]},
        )
        yield ev("response.output_item.done", {"output_index": idx, "item": item})
    resp["output"] = output
    resp["usage"] = _usage(usage)
    _finish(resp, finish)
    kind = "response.completed" if resp["status"] == "completed" else "response.incomplete"
    yield ev(kind, {"response": resp})


# ---- the route --------------------------------------------------------------------------------------------------


async def create_response(request: Request) -> Response:
    """OpenAI Responses API, stateless (`store: false`): `input` as text or items, `instructions`, function tools,
    `stream` with its typed events. Nothing is stored: `previous_response_id` is refused."""
    req = await read_body(request, ResponsesIn)
    body = to_chat(req)
    gateway = service(request, GATEWAY)
    tenant = tenant_id(request)
    if not req.stream:
        result = await gateway.completion(tenant_id=tenant, request=chat_request(body))
        headers = {"x-cache": "hit"} if result.get("cached") else None
        return Response(dumps(to_response(req, result)), media_type="application/json", headers=headers)
    body["stream"] = True
    body["stream_options"] = {"include_usage": True}
    events = await gateway.stream(tenant_id=tenant, request=chat_request(body))
    return StreamingResponse(
        response_events(req, events),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )


_STREAM_EVENT: dict[str, Any] = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {"event": {"type": "string"}, "data": {"type": "string", "contentMediaType": "application/json"}},
}


def responses_operation() -> Operation:
    return Operation(
        summary="OpenAI-compatible responses (stateless)",
        tags=("openai",),
        body=ResponsesIn,
        response=OpenAIResponse,
        content={"text/event-stream": _STREAM_EVENT},
        errors=(404, 429, 502, 503, 504),
        serves=("completion", "stream"),
    )
