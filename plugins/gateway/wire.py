"""The OpenAI wire shapes every provider adapter speaks internally, and the adapter contract.

Adapters take an OpenAI chat-completions body and return an OpenAI completion (or stream OpenAI chunks), so
the router, the limits and the ledger see one format whatever the provider. Token estimates here are only
for reserving a tenant's tokens-per-minute before a call; real usage settles the reservation afterwards.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from app.codec import dumps
from plugins.gateway.catalog import Deployment


class ChatProvider(Protocol):
    async def chat(self, dep: Deployment, body: dict[str, Any]) -> dict[str, Any]:
        """One OpenAI chat completion (non-streaming) with `usage`."""
        ...

    def stream(self, dep: Deployment, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """OpenAI chunks; the last one carries `usage` (with `choices: []`). Raises before the first chunk
        for a failure that allows a fallback; a failure after it ends the stream."""
        ...


def choices_wanted(body: dict[str, Any]) -> int:
    return int(body.get("n") or 1)


async def fan_out(call: Callable[[], Awaitable[dict[str, Any]]], n: int) -> dict[str, Any]:
    """`n` choices from a provider that makes one per call: `n` parallel calls, their choices numbered in order and
    their usage added up (each call is paid for, so each is metered)."""
    results = await asyncio.gather(*(call() for _ in range(n)))
    choices, prompt, completion_tokens = [], 0, 0
    for i, r in enumerate(results):
        for choice in r.get("choices") or ():
            choices.append({**choice, "index": i})
        u = r.get("usage") or {}
        prompt += int(u.get("prompt_tokens") or 0)
        completion_tokens += int(u.get("completion_tokens") or 0)
    return {**results[0], "choices": choices, "usage": usage(prompt, completion_tokens)}


async def fan_out_stream(streams: list[AsyncIterator[dict[str, Any]]]) -> AsyncIterator[dict[str, Any]]:
    """The chunks of `len(streams)` parallel streams as one stream of as many choices: each stream's chunks carry its
    position as their choice `index` and the first stream's id; their usage chunks become one, added up, at the end.
    A failure of any stream ends the whole one (raised, as a single stream's would be)."""
    queue: asyncio.Queue[tuple[int, dict[str, Any] | None, BaseException | None]] = asyncio.Queue()

    async def pump(i: int, stream: AsyncIterator[dict[str, Any]]) -> None:
        try:
            async for ch in stream:
                await queue.put((i, ch, None))
            await queue.put((i, None, None))
        except Exception as exc:
            await queue.put((i, None, exc))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    ended, prompt, completion_tokens = 0, 0, 0
    first_id: str | None = None
    last: dict[str, Any] = {}
    try:
        while ended < len(streams):
            i, ch, exc = await queue.get()
            if exc is not None:
                raise exc
            if ch is None:
                ended += 1
                continue
            first_id = first_id or str(ch.get("id") or new_id())
            last = ch
            if ch.get("usage"):
                prompt += int(ch["usage"].get("prompt_tokens") or 0)
                completion_tokens += int(ch["usage"].get("completion_tokens") or 0)
            if not ch.get("choices"):
                continue
            out = dict(ch)
            out.pop("usage", None)
            out["id"] = first_id
            out["choices"] = [{**c, "index": i} for c in ch["choices"]]
            yield out
        yield usage_chunk(
            id=first_id or new_id(), model=str(last.get("model") or ""), usage=usage(prompt, completion_tokens)
        )
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for s in streams:
            await s.aclose()  # type: ignore[attr-defined]


class EmbeddingProvider(Protocol):
    async def embed(self, dep: Deployment, texts: list[str], body: dict[str, Any]) -> tuple[list[list[float]], int]:
        """Vectors in input order, and prompt tokens used."""
        ...


def new_id(prefix: str = "chatcmpl") -> str:
    return f"{prefix}-{os.urandom(12).hex()}"


def usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def completion(
    *, id: str, model: str, message: dict[str, Any], finish_reason: str | None, usage: dict[str, int]
) -> dict[str, Any]:
    return {
        "id": id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
        "usage": usage,
    }


def chunk(
    *, id: str, model: str, delta: dict[str, Any] | None = None, finish_reason: str | None = None, created: int = 0
) -> dict[str, Any]:
    return {
        "id": id,
        "object": "chat.completion.chunk",
        "created": created or int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish_reason}],
    }


def usage_chunk(*, id: str, model: str, usage: dict[str, int], created: int = 0) -> dict[str, Any]:
    return {
        "id": id,
        "object": "chat.completion.chunk",
        "created": created or int(time.time()),
        "model": model,
        "choices": [],
        "usage": usage,
    }


def estimate_text_tokens(text: str) -> int:
    # ~4 characters a token for English; only a reservation, settled with the provider's count.
    return max(1, (len(text) + 3) // 4)


def estimate_prompt_tokens(body: dict[str, Any]) -> int:
    messages = body.get("messages") or []
    size = len(dumps(messages)) + (len(dumps(body["tools"])) if body.get("tools") else 0)
    return max(1, size // 4) + 3 * len(messages)


def text_of(content: Any) -> str:
    """The text of a message's content (a string, or a list of parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return str(content)
