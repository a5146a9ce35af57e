"""Grounded answers: the prompt with numbered passages, the citations an answer makes, and the SSE framing.

Pure logic, no I/O. A citation is a `[n]` in the answer whose `n` numbers a retrieved passage; anything else
that looks like one (a number past the passages, a `[0]`, a `[n]` the question itself carried into an echoing
model's output but that names no passage) is dropped, so a citation always points at a passage that was retrieved.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

from app.codec import dumps, loads
from plugins.rag.schemas import Citation, Hit

SYSTEM = (
    "Answer the question using only the numbered passages. After each statement, cite the passages that support "
    "it as [n]. If the passages do not contain the answer, say that you do not know."
)
_MARKER = re.compile(r"\[(\d{1,4})\]")


def prompt(query: str, hits: Sequence[Hit]) -> str:
    lines = ["Passages:"]
    for n, h in enumerate(hits, 1):
        where = f"document {h.document_id}" + (f", page {h.page}" if h.page is not None else "")
        lines.append(f"[{n}] ({where}) {h.text}")
    if not hits:
        lines.append("(no passage was found)")
    lines += ["", f"Question: {query}"]
    return "\n".join(lines)


def citations(answer: str, hits: Sequence[Hit]) -> list[Citation]:
    """The passages `answer` cites, in order of first citation, each once."""
    seen: list[int] = []
    for m in _MARKER.finditer(answer):
        n = int(m.group(1))
        if 1 <= n <= len(hits) and n not in seen:
            seen.append(n)
    return [
        Citation(passage=n, document_id=hits[n - 1].document_id, chunk_id=hits[n - 1].chunk_id, page=hits[n - 1].page)
        for n in seen
    ]


def event(name: str, data: Any) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + dumps(data) + b"\n\n"


async def deltas(chunks: AsyncIterator[bytes]) -> AsyncIterator[str | dict[str, Any]]:
    """The text deltas of an OpenAI chat completion SSE stream; an error event's payload as a dict (then stops)."""
    buffer = b""
    async for chunk in chunks:
        buffer += chunk
        while b"\n\n" in buffer:
            raw, buffer = buffer.split(b"\n\n", 1)
            name, data = "message", b""
            for line in raw.splitlines():
                if line.startswith(b"event:"):
                    name = line[6:].strip().decode()
                elif line.startswith(b"data:"):
                    data += line[5:].strip()
            if not data or data == b"[DONE]":
                continue
            payload = loads(data)
            if name == "error" or (isinstance(payload, dict) and "error" in payload and "choices" not in payload):
                yield payload if isinstance(payload, dict) else {"error": payload}
                return
            for choice in payload.get("choices") or []:
                text = (choice.get("delta") or {}).get("content")
                if text:
                    yield str(text)
