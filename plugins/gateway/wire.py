"""The OpenAI wire shapes every provider adapter speaks internally, and the adapter contract.

Adapters take an OpenAI chat-completions body and return an OpenAI completion (or stream OpenAI chunks), so
the router, the limits and the ledger see one format whatever the provider. Token estimates here are only
for reserving a tenant's tokens-per-minute before a call; real usage settles the reservation afterwards.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
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
