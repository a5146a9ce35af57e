"""A chat completion stream as the client sees it: OpenAI chunks as server-sent events, metered when it ends.

The usage chunk the gateway always asks upstream for is passed on only when the client asked for it
(`stream_options.include_usage`). A failure after the first chunk ends the stream with an `error` event and no
`[DONE]`, never a clean finish. Whatever way the stream ends (finished, failed, or the client went away), the
ledger gets one entry with the real usage, or an estimate from the streamed text when the upstream sent none.

A stream that finishes is committed to the ledger before its last bytes (the usage chunk, then `[DONE]`) go
out; when the ledger cannot take it in time the stream ends with an `error` event instead. The generator is
started before the response is (`sse_events` returns it parked at its first chunk), so that its cleanup, and
with it the ledger entry, runs even when the response never reads a byte of it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from app import codec
from app.context import current_request_id
from app.errors import ServiceError, operator_detail
from plugins.gateway import wire
from plugins.gateway.catalog import Deployment, ModelEntry
from plugins.gateway.ledger import Usage
from plugins.gateway.limits import Reservation
from plugins.gateway.metering import Meter, interrupted


def _error_event(exc: ServiceError) -> bytes:
    body = {"error": {"message": exc.detail, "type": "upstream_error", "param": None, "code": exc.slug}}
    return b"data: " + codec.dumps(body) + b"\n\n"


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
    events = _events(
        meter,
        tenant_id=tenant_id,
        entry=entry,
        dep=dep,
        chunks=chunks,
        reservation=reservation,
        include_usage=include_usage,
        started=started,
    )
    first = await anext(events)
    return _chain(first, events)


async def _chain(first: bytes, rest: AsyncGenerator[bytes, None]) -> AsyncIterator[bytes]:
    try:
        yield first
        async for data in rest:
            yield data
    finally:
        await rest.aclose()


async def _events(
    meter: Meter,
    *,
    tenant_id: str,
    entry: ModelEntry,
    dep: Deployment,
    chunks: AsyncIterator[dict[str, Any]],
    reservation: Reservation,
    include_usage: bool,
    started: float,
) -> AsyncGenerator[bytes, None]:
    request_id = current_request_id()  # the cleanup may run in another task, outside this request's context
    used: dict[str, Any] = {}
    streamed_chars = 0
    held: bytes | None = None  # the usage chunk, sent after the commit

    def usage(status: int, error: str | None) -> Usage:
        prompt = int(used.get("prompt_tokens") or wire.estimate_prompt_tokens({"messages": []}))
        completion = int(used.get("completion_tokens") or (streamed_chars + 3) // 4)
        return meter.usage(
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
            request_id=request_id,
        )

    failure: ServiceError | None = None
    try:
        try:
            async for ch in chunks:
                if held is not None:  # something after the usage chunk: it was not the last after all
                    yield held
                    held = None
                if ch.get("usage"):
                    used = ch["usage"]
                    if not ch.get("choices"):
                        if include_usage:
                            held = b"data: " + codec.dumps(ch) + b"\n\n"
                        continue
                for choice in ch.get("choices") or ():
                    streamed_chars += len((choice.get("delta") or {}).get("content") or "")
                yield b"data: " + codec.dumps(ch) + b"\n\n"
        except ServiceError as exc:
            failure = exc
    except BaseException as exc:
        # The client went away (GeneratorExit at a yield) or the task was cancelled: queue the entry, no waiting.
        status, reason = interrupted(exc)
        meter.ledger.record_nowait(usage(status, reason))
        raise
    try:
        await meter.commit(usage(failure.status, operator_detail(failure)) if failure else usage(200, None))
    except ServiceError as exc:
        yield _error_event(failure or exc)
        return
    if failure is not None:
        yield _error_event(failure)
        return
    if held is not None:
        yield held
    yield b"data: [DONE]\n\n"
