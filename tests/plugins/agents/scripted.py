"""A scripted OpenAI-compatible chat model on 127.0.0.1, for tool loops that `mock-1` cannot play (it calls one tool
once): the gateway's model map points a model at it, so agents reach it through the gateway like any provider.

The latest user message is the script, a JSON object:
- `tool`, `args`: call this tool with these arguments while fewer than `times` (default 1) tool results follow the
  latest user message; with `vary`, the arguments also carry `n`, the number of results so far (no two alike);
- `answer`: the final text (default: "done after <n> tool calls: <last tool result>");
- `delay`: seconds to wait before every reply; `tokens`: prompt and completion tokens reported per reply.
Any other text is answered "heard <u> user messages, last: <text>" (u counts the user messages it was given).
Every request body is kept in `received`; while `going` is cleared, replies wait.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


@dataclass
class ScriptedModel:
    received: list[dict[str, Any]] = field(default_factory=list)
    # Cleared, replies wait until it is set again (a test holds a run mid-call); the server runs in its own thread.
    going: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.going.set()

    def reply(self, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, int], float]:
        messages = body.get("messages") or []
        last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
        text = _text(messages[last_user].get("content")) if last_user >= 0 else ""
        try:
            plan = json.loads(text)
        except ValueError:
            plan = None
        if not isinstance(plan, dict):
            users = sum(1 for m in messages if m.get("role") == "user")
            return {"role": "assistant", "content": f"heard {users} user messages, last: {text}"}, _usage({}), 0.0
        results = [m for m in messages[last_user + 1 :] if m.get("role") == "tool"]
        usage, delay = _usage(plan), float(plan.get("delay") or 0)
        if plan.get("tool") and len(results) < int(plan.get("times", 1)):
            args = dict(plan.get("args") or {})
            if plan.get("vary"):
                args["n"] = len(results)
            call = {
                "id": f"call_{len(results)}",
                "type": "function",
                "function": {"name": plan["tool"], "arguments": json.dumps(args)},
            }
            return {"role": "assistant", "content": None, "tool_calls": [call]}, usage, delay
        last = _text(results[-1].get("content")) if results else ""
        answer = plan.get("answer") or f"done after {len(results)} tool calls: {last}"
        return {"role": "assistant", "content": answer}, usage, delay

    async def chat(self, request: Request) -> Response:
        body = json.loads(await request.body())
        self.received.append(body)
        message, usage, delay = self.reply(body)
        if not self.going.is_set():
            await asyncio.to_thread(self.going.wait)
        if delay:
            await asyncio.sleep(delay)
        finish = "tool_calls" if message.get("tool_calls") else "stop"
        if not body.get("stream"):
            return JSONResponse(
                {
                    "id": "chatcmpl-scripted",
                    "object": "chat.completion",
                    "created": 1,
                    "model": body["model"],
                    "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                    "usage": usage,
                }
            )

        def chunk(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> bytes:
            c = {
                "id": "chatcmpl-scripted",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": body["model"],
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}] if delta is not None else [],
                **extra,
            }
            return b"data: " + json.dumps(c).encode() + b"\n\n"

        async def events() -> AsyncIterator[bytes]:
            yield chunk({"role": "assistant", "content": ""})
            for i, call in enumerate(message.get("tool_calls") or []):
                yield chunk({"tool_calls": [{"index": i, **call}]})
            words = (message.get("content") or "").split(" ") if message.get("content") else []
            for i, word in enumerate(words):
                yield chunk({"content": word if i == 0 else " " + word})
            yield chunk({}, finish)
            yield chunk(None, None, usage=usage)  # type: ignore[arg-type]
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "scripted", "object": "model", "owned_by": "test"}]})

    def app(self) -> Starlette:
        return Starlette(
            routes=[Route("/v1/chat/completions", self.chat, methods=["POST"]), Route("/v1/models", self.models)]
        )


def _usage(plan: dict[str, Any]) -> dict[str, int]:
    prompt, completion = plan.get("tokens") or (10, 5)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
