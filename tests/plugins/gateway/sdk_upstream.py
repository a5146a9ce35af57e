"""Fake OpenAI and Anthropic providers whose every answer is built from the official SDKs' own types.

`SdkUpstream` serves `/v1/chat/completions` (answers are `openai.types.chat.ChatCompletion` objects, streamed as
`ChatCompletionChunk`s) and `/v1/messages` (answers are `anthropic.types.Message` objects, streamed as the documented
`message_start`, `content_block_*`, `message_delta`, `message_stop` events, each an `anthropic.types.Raw*Event`).
Errors are `openai.types.shared.ErrorObject` / `anthropic.types.ErrorResponse` bodies. A test scripts the next
answer (`reply_openai` / `reply_anthropic`, given the request body) or takes the default echo of the last user text.

The Anthropic side refuses, with the 400 `invalid_request_error` the real API gives, what the real API refuses and
a translation could get wrong: a top-level field `MessageCreateParams` does not know, empty message content, a
temperature above 1, a `system` role inside `messages`, turns that do not alternate. So a gateway that sends such a
body fails a test here as it would fail a tenant there. It runs under uvicorn on 127.0.0.1 (tests/servers.py).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, get_type_hints

import anthropic.types as at
from anthropic.types import message_create_params
from openai.types import CompletionUsage
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessage
from openai.types.chat.chat_completion import Choice
from openai.types.chat.chat_completion_chunk import Choice as ChunkChoice
from openai.types.chat.chat_completion_chunk import ChoiceDelta, ChoiceDeltaToolCall, ChoiceDeltaToolCallFunction
from openai.types.shared import ErrorObject
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.servers import serve_in_thread

# The top-level fields Anthropic's Messages API accepts, as its SDK types them (API version 2026-10-21), and the
# sampling fields that version removed, which the version the gateway sends (2023-06-01) still takes.
ANTHROPIC_FIELDS = frozenset(get_type_hints(message_create_params.MessageCreateParamsNonStreaming)) | {"stream"}
LEGACY_FIELDS = frozenset({"temperature", "top_p", "top_k"})


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for m in reversed(messages):
        if m.get("role") != "user":
            continue
        c = m.get("content")
        if isinstance(c, str):
            return c
        return " ".join(p.get("text", "") for p in c or [] if p.get("type") == "text")
    return ""


def openai_error(status: int, message: str, *, type: str, code: str | None = None, param: str | None = None) -> Any:
    return status, {"error": ErrorObject(message=message, type=type, code=code, param=param).model_dump()}


def anthropic_error(status: int, message: str, *, type: str = "invalid_request_error") -> Any:
    body = at.ErrorResponse.model_validate({"type": "error", "error": {"type": type, "message": message}})
    return status, body.model_dump(exclude_none=True)


def echo_completion(body: dict[str, Any], name: str) -> ChatCompletion:
    text = f"{name} says: {last_user_text(body['messages'])}"
    n = int(body.get("n") or 1)
    return ChatCompletion(
        id="chatcmpl-sdk",
        object="chat.completion",
        created=1,
        model=body["model"],
        choices=[
            Choice(
                index=i,
                finish_reason="stop",
                message=ChatCompletionMessage(role="assistant", content=text if n == 1 else f"{text} #{i}"),
            )
            for i in range(n)
        ],
        usage=CompletionUsage(prompt_tokens=11, completion_tokens=7 * n, total_tokens=11 + 7 * n),
    )


def echo_message(body: dict[str, Any], name: str) -> at.Message:
    return at.Message(
        id="msg_sdk",
        type="message",
        role="assistant",
        model=body["model"],
        content=[at.TextBlock(type="text", text=f"{name} says: {last_user_text(body['messages'])}")],
        stop_reason="end_turn",
        stop_sequence=None,
        usage=at.Usage(input_tokens=13, output_tokens=9),
    )


def completion_chunks(c: ChatCompletion, *, usage: bool) -> Iterator[ChatCompletionChunk]:
    """A completion as the chunks OpenAI streams for it: role, content by word, tool calls, finish, usage."""

    def chunk(choices: list[ChunkChoice], **kw: Any) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=c.id, object="chat.completion.chunk", created=c.created, model=c.model, choices=choices, **kw
        )

    for ch in c.choices:
        i = ch.index
        yield chunk([ChunkChoice(index=i, delta=ChoiceDelta(role="assistant", content=""))])
        words = (ch.message.content or "").split(" ") if ch.message.content else []
        for k, w in enumerate(words):
            yield chunk([ChunkChoice(index=i, delta=ChoiceDelta(content=w if k == 0 else " " + w))])
        for t, call in enumerate(ch.message.tool_calls or []):
            fn = call.function  # type: ignore[union-attr]
            start = ChoiceDeltaToolCall(
                index=t,
                id=call.id,
                type="function",
                function=ChoiceDeltaToolCallFunction(name=fn.name, arguments=""),
            )
            yield chunk([ChunkChoice(index=i, delta=ChoiceDelta(tool_calls=[start]))])
            half = len(fn.arguments) // 2
            for part in (fn.arguments[:half], fn.arguments[half:]):
                piece = ChoiceDeltaToolCall(index=t, function=ChoiceDeltaToolCallFunction(arguments=part))
                yield chunk([ChunkChoice(index=i, delta=ChoiceDelta(tool_calls=[piece]))])
        yield chunk([ChunkChoice(index=i, delta=ChoiceDelta(), finish_reason=ch.finish_reason)])
    if usage:
        yield chunk([], usage=c.usage)


def message_events(m: at.Message) -> Iterator[at.RawMessageStreamEvent]:
    """A message as the documented event sequence Anthropic streams for it."""
    start = m.model_copy(
        update={
            "content": [],
            "stop_reason": None,
            "usage": at.Usage(input_tokens=m.usage.input_tokens, output_tokens=1),
        }
    )
    yield at.RawMessageStartEvent(type="message_start", message=start)
    for i, block in enumerate(m.content):
        if isinstance(block, at.TextBlock):
            yield at.RawContentBlockStartEvent(
                type="content_block_start", index=i, content_block=at.TextBlock(type="text", text="")
            )
            for k, w in enumerate(block.text.split(" ")):
                delta = at.TextDelta(type="text_delta", text=w if k == 0 else " " + w)
                yield at.RawContentBlockDeltaEvent(type="content_block_delta", index=i, delta=delta)
        elif isinstance(block, at.ToolUseBlock):
            empty = block.model_copy(update={"input": {}})
            yield at.RawContentBlockStartEvent(type="content_block_start", index=i, content_block=empty)
            raw = json.dumps(block.input)
            half = len(raw) // 2
            for part in (raw[:half], raw[half:]):
                json_delta = at.InputJSONDelta(type="input_json_delta", partial_json=part)
                yield at.RawContentBlockDeltaEvent(type="content_block_delta", index=i, delta=json_delta)
        else:
            raise AssertionError(f"the fake does not stream {type(block).__name__}")
        yield at.RawContentBlockStopEvent(type="content_block_stop", index=i)
    yield at.RawMessageDeltaEvent.model_validate(
        {
            "type": "message_delta",
            "delta": {"stop_reason": m.stop_reason, "stop_sequence": m.stop_sequence},
            "usage": {"output_tokens": m.usage.output_tokens},
        }
    )
    yield at.RawMessageStopEvent(type="message_stop")


def anthropic_refusal(body: dict[str, Any], version: str) -> str | None:
    """Why Anthropic's API would refuse this body with a 400, or None."""
    known = ANTHROPIC_FIELDS | LEGACY_FIELDS if version == "2023-06-01" else ANTHROPIC_FIELDS
    unknown = sorted(set(body) - known)
    if unknown:
        return f"{unknown[0]}: Extra inputs are not permitted"
    t = body.get("temperature")
    if t is not None and not 0 <= t <= 1:
        return "temperature: Input should be less than or equal to 1"
    messages = body.get("messages") or []
    for i, m in enumerate(messages):
        if m.get("role") not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        if i and messages[i - 1].get("role") == m.get("role"):
            return "messages: roles must alternate between 'user' and 'assistant'"
        content = m.get("content")
        final_assistant = i == len(messages) - 1 and m.get("role") == "assistant"
        if not content and not final_assistant:
            return f"messages.{i}: all messages must have non-empty content except for the optional final assistant"
        for j, block in enumerate(content if isinstance(content, list) else []):
            if block.get("type") == "text" and not block.get("text"):
                return f"messages.{i}.content.{j}.text: text content blocks must be non-empty"
            if block.get("type") == "tool_use" and not isinstance(block.get("input"), dict):
                return f"messages.{i}.content.{j}.tool_use.input: Input should be a valid dictionary"
    return None


@dataclass
class SdkUpstream:
    name: str = "up"
    reply_openai: Callable[[dict[str, Any]], ChatCompletion] | None = None
    reply_anthropic: Callable[[dict[str, Any]], at.Message] | None = None
    fail: tuple[int, dict[str, Any]] | None = None  # (status, error body) answered instead
    delay: float = 0.0
    received: list[dict[str, Any]] = field(default_factory=list)

    async def _read(self, request: Request) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(await request.body())
        self.received.append(body)
        if self.delay:
            await asyncio.sleep(self.delay)
        return body

    def _failed(self) -> Response | None:
        if self.fail is None:
            return None
        status, body = self.fail
        return Response(json.dumps(body), status_code=status, media_type="application/json")

    async def chat(self, request: Request) -> Response:
        body = await self._read(request)
        if (failed := self._failed()) is not None:
            return failed
        c = (self.reply_openai or (lambda b: echo_completion(b, self.name)))(body)
        if not body.get("stream"):
            return Response(c.model_dump_json(exclude_unset=True), media_type="application/json")
        usage = bool((body.get("stream_options") or {}).get("include_usage"))

        async def events() -> AsyncIterator[bytes]:
            for ch in completion_chunks(c, usage=usage):
                yield b"data: " + ch.model_dump_json(exclude_unset=True).encode() + b"\n\n"
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def messages(self, request: Request) -> Response:
        body = await self._read(request)
        if (failed := self._failed()) is not None:
            return failed
        refusal = anthropic_refusal(body, request.headers.get("anthropic-version", ""))
        if refusal:
            status, err = anthropic_error(400, refusal)
            return Response(json.dumps(err), status_code=status, media_type="application/json")
        m = (self.reply_anthropic or (lambda b: echo_message(b, self.name)))(body)
        if not body.get("stream"):
            return Response(m.model_dump_json(exclude_none=True), media_type="application/json")

        async def events() -> AsyncIterator[bytes]:
            for ev in message_events(m):
                yield f"event: {ev.type}\ndata: {ev.model_dump_json(exclude_none=True)}\n\n".encode()

        return StreamingResponse(events(), media_type="text/event-stream")

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/messages", self.messages, methods=["POST"]),
            ]
        )


@contextmanager
def sdk_upstream(name: str = "up", **kw: Any) -> Iterator[tuple[SdkUpstream, str]]:
    fake = SdkUpstream(name=name, **kw)
    with serve_in_thread(fake.app()) as url:
        yield fake, url


def two_providers(oa_url: str, an_url: str, **model_options: Any) -> dict[str, Any]:
    """A model map: `gpt` on the OpenAI fake, `claude` on the Anthropic fake (with `model_options` on both)."""
    return {
        "gpt": {
            "deployments": [
                {"provider": "openai", "model": "gpt-test", "base_url": f"{oa_url}/v1", "api_key_env": "OA_KEY"}
            ],
            **model_options,
        },
        "claude": {
            "deployments": [
                {"provider": "anthropic", "model": "claude-test", "base_url": an_url, "api_key_env": "AN_KEY"}
            ],
            **model_options,
        },
    }
