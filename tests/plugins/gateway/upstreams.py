"""Fake LLM providers for the gateway tests: one Starlette app speaking OpenAI's and Anthropic's wire formats.

It runs under uvicorn on 127.0.0.1 (tests/servers.py), records every request it receives, and can be told to
fail: answer a status (with Retry-After), die in the middle of a stream, or be slow. Replies are derived from
the last user message, so a test can tell which upstream answered.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class FakeUpstream:
    name: str = "up"
    models: list[str] = field(default_factory=lambda: ["gpt-test", "text-embedding-test"])
    fail_status: int | None = None
    fail_message: str | None = None
    retry_after: str | None = None
    fail_midstream: bool = False
    delay: float = 0.0
    list_delay: float = 0.0  # seconds before a model listing answers
    list_fail_status: int | None = None  # the model listing answers this status instead
    listings: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)

    # ---- helpers -------------------------------------------------------------------------------------

    def _text(self, body: dict[str, Any]) -> str:
        last = ""
        for m in body.get("messages") or []:
            if m.get("role") == "user":
                c = m.get("content")
                if isinstance(c, str):
                    last = c
                elif isinstance(c, list):
                    last = "".join(p.get("text", "") for p in c if p.get("type") == "text")
        return f"{self.name} says: {last}"

    async def _gate(self, request: Request) -> tuple[dict[str, Any], Response | None]:
        body = json.loads(await request.body() or b"{}")
        self.received.append(body)
        self.headers.append(dict(request.headers))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_status:
            headers = {"retry-after": self.retry_after} if self.retry_after else {}
            message = self.fail_message or f"{self.name} failing with {self.fail_status}"
            err = {"error": {"message": message, "type": "server_error"}}
            return body, JSONResponse(err, status_code=self.fail_status, headers=headers)
        return body, None

    # ---- OpenAI --------------------------------------------------------------------------------------

    async def chat(self, request: Request) -> Response:
        body, failed = await self._gate(request)
        if failed:
            return failed
        text = self._text(body)
        tools = body.get("tools") or []
        call = None
        if tools and body["messages"][-1]["role"] == "user":
            call = {
                "id": "call_up1",
                "type": "function",
                "function": {"name": tools[0]["function"]["name"], "arguments": '{"city": "Paris"}'},
            }
        usage = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": None if call else text}
            if call:
                message["tool_calls"] = [call]
            return JSONResponse(
                {
                    "id": "chatcmpl-up",
                    "object": "chat.completion",
                    "created": 1,
                    "model": body["model"],
                    "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if call else "stop"}],
                    "usage": usage,
                }
            )

        async def events() -> AsyncIterator[bytes]:
            def ev(delta: dict[str, Any], finish: str | None = None) -> bytes:
                c = {
                    "id": "chatcmpl-up",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": body["model"],
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                }
                return b"data: " + json.dumps(c).encode() + b"\n\n"

            yield ev({"role": "assistant", "content": ""})
            if call:
                yield ev({"tool_calls": [{"index": 0, **call}]})
            else:
                words = text.split(" ")
                for i, w in enumerate(words):
                    yield ev({"content": w if i == 0 else " " + w})
                    if self.fail_midstream and i == 1:
                        raise RuntimeError("upstream died mid-stream")
            yield ev({}, "tool_calls" if call else "stop")
            if (body.get("stream_options") or {}).get("include_usage"):
                u = {
                    "id": "chatcmpl-up",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": body["model"],
                    "choices": [],
                    "usage": usage,
                }
                yield b"data: " + json.dumps(u).encode() + b"\n\n"
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def embeddings(self, request: Request) -> Response:
        body, failed = await self._gate(request)
        if failed:
            return failed
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {"object": "embedding", "index": i, "embedding": [float(len(t)), 1.0, 0.5]} for i, t in enumerate(inputs)
        ]
        return JSONResponse(
            {"object": "list", "model": body["model"], "data": data, "usage": {"prompt_tokens": 5, "total_tokens": 5}}
        )

    async def list_models(self, request: Request) -> Response:
        self.headers.append(dict(request.headers))
        self.listings += 1
        if self.list_delay:
            await asyncio.sleep(self.list_delay)
        if self.list_fail_status:
            err = {"error": {"message": f"{self.name} cannot list", "type": "server_error"}}
            return JSONResponse(err, status_code=self.list_fail_status)
        return JSONResponse(
            {"object": "list", "data": [{"id": m, "object": "model", "owned_by": self.name} for m in self.models]}
        )

    # ---- Anthropic -----------------------------------------------------------------------------------

    async def messages(self, request: Request) -> Response:
        body, failed = await self._gate(request)
        if failed:
            return failed
        text = self._text(body)
        tools = body.get("tools") or []
        last = body["messages"][-1]
        use_tool = tools and last["role"] == "user" and not any(b.get("type") == "tool_result" for b in last["content"])
        if not body.get("stream"):
            content: list[dict[str, Any]] = [{"type": "text", "text": text}]
            if use_tool:
                content.append(
                    {"type": "tool_use", "id": "toolu_1", "name": tools[0]["name"], "input": {"city": "Paris"}}
                )
            return JSONResponse(
                {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "model": body["model"],
                    "content": content,
                    "stop_reason": "tool_use" if use_tool else "end_turn",
                    "stop_sequence": None,
                    "usage": {"input_tokens": 13, "output_tokens": 9},
                }
            )

        async def events() -> AsyncIterator[bytes]:
            def ev(kind: str, data: dict[str, Any]) -> bytes:
                return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()

            yield ev(
                "message_start",
                {
                    "message": {
                        "id": "msg_1",
                        "type": "message",
                        "role": "assistant",
                        "model": body["model"],
                        "content": [],
                        "usage": {"input_tokens": 13, "output_tokens": 1},
                    }
                },
            )
            yield ev("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
            yield ev("ping", {})
            for i, w in enumerate(text.split(" ")):
                yield ev(
                    "content_block_delta",
                    {"index": 0, "delta": {"type": "text_delta", "text": w if i == 0 else " " + w}},
                )
                if self.fail_midstream and i == 1:
                    yield ev("error", {"error": {"type": "overloaded_error", "message": "Overloaded"}})
                    return
            yield ev("content_block_stop", {"index": 0})
            if use_tool:
                yield ev(
                    "content_block_start",
                    {
                        "index": 1,
                        "content_block": {"type": "tool_use", "id": "toolu_1", "name": tools[0]["name"], "input": {}},
                    },
                )
                for part in ('{"city": ', '"Paris"}'):
                    yield ev(
                        "content_block_delta", {"index": 1, "delta": {"type": "input_json_delta", "partial_json": part}}
                    )
                yield ev("content_block_stop", {"index": 1})
            yield ev(
                "message_delta",
                {"delta": {"stop_reason": "tool_use" if use_tool else "end_turn"}, "usage": {"output_tokens": 9}},
            )
            yield ev("message_stop", {})

        return StreamingResponse(events(), media_type="text/event-stream")

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/embeddings", self.embeddings, methods=["POST"]),
                Route("/v1/models", self.list_models, methods=["GET"]),
                Route("/v1/messages", self.messages, methods=["POST"]),
            ]
        )
