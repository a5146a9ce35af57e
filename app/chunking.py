"""Cutting text into word windows: pure logic, no I/O (the rag plugin chunks with it, the ingestion plugin splits
a passage longer than its budget with it).

A chunk is `size` words (whitespace-separated runs) of the original text, sliced from it unchanged (line breaks
and spacing kept), and the next chunk starts `size - overlap` words later. Character offsets say where each chunk
lies in the part it came from, so a citation can point into the source.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class Piece:
    text: str
    start: int
    end: int


def chunk_text(text: str, *, size: int, overlap: int) -> list[Piece]:
    """The chunks of `text` in order (one when it has at most `size` words; none when it has no word)."""
    spans = [m.span() for m in _WORD.finditer(text)]
    if not spans:
        return []
    if len(spans) <= size:
        start, end = spans[0][0], spans[-1][1]
        return [Piece(text[start:end], start, end)]
    step = size - overlap
    pieces: list[Piece] = []
    for first in range(0, len(spans), step):
        last = min(first + size, len(spans)) - 1
        start, end = spans[first][0], spans[last][1]
        pieces.append(Piece(text[start:end], start, end))
        if last == len(spans) - 1:
            break
    return pieces
