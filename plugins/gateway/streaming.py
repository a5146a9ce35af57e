"""A chat completion stream as the client sees it: OpenAI chunks as server-sent events, metered when it ends.

The usage chunk the gateway always asks upstream for is passed on only when the client asked for it
(`stream_options.include_usage`). A failure after the first chunk ends the stream with an `error` event and no
`[DONE]`, never a clean finish. Whatever way the stream ends (finished, failed, or the client went away), the
ledger gets one entry with the real usage, or an estimate from the streamed text when the upstream sent none.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from app import codec
from app.errors import ServiceError, operator_detail
from plugins.gateway import wire
from plugins.gateway.catalog import Deployment, ModelEntry
from plugins.gateway.limits import Reservation
from plugins.gateway.metering import Meter


async def sse_events(
    meter: Meter,
    *,
    tenant_id: str,
    entry: ModelEntry,
    dep: Deployment,
    chunks: AsyncIterator[dict[str, Any]],
    reservation: Reservation,
    include_usage: bool,
    started: float,
) -> AsyncIterator[bytes]:
    used: dict[str, Any] = {}
    streamed_chars = 0
    status = 499  # the client went away, unless the stream finishes or fails below
    error: str | None = "the client went away"
    try:
        async for ch in chunks:
            if ch.get("usage"):
                used = ch["usage"]
                if not ch.get("choices") and not include_usage:
                    continue
            for choice in ch.get("choices") or ():
                streamed_chars += len((choice.get("delta") or {}).get("content") or "")
            yield b"data: " + codec.dumps(ch) + b"\n\n"
        status, error = 200, None
        yield b"data: [DONE]\n\n"
    except ServiceError as exc:
        status, error = exc.status, operator_detail(exc)
        body = {"error": {"message": exc.detail, "type": "upstream_error", "param": None, "code": exc.slug}}
        yield b"data: " + codec.dumps(body) + b"\n\n"
    finally:
        prompt = int(used.get("prompt_tokens") or wire.estimate_prompt_tokens({"messages": []}))
        completion = int(used.get("completion_tokens") or (streamed_chars + 3) // 4)
        meter.record(
            tenant_id=tenant_id,
            model=entry.name,
            dep=dep,
            started=started,
            status=status,
            prompt=prompt,
            completion=completion,
            reservation=reservation,
            stream=True,
            error=error,
        )
