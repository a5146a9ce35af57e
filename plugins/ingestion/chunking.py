"""Structure-aware chunking of parsed blocks to a word budget with overlap: pure logic, no I/O.

A chunk never crosses a heading or a page (so its heading path and page are exact), packs whole paragraphs while
they fit, falls back to whole sentences for a paragraph over the budget, and to word windows (app.chunking) for a
sentence over it. The next chunk of the same section starts with the last sentences of the previous one, up to
`overlap` words. The budget is counted in words as the rag plugin counts them (whitespace-separated runs), so every
chunk fits the collection's chunk size and rag stores it as one chunk.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from app.chunking import chunk_text
from plugins.ingestion.parsers import Block

_WORD = re.compile(r"\S+")
# After a sentence's end (. ! ? or the CJK full stop, with closing quotes or brackets), before the next one.
_SENTENCE = re.compile(r"(?<=[.!?。])[\"')\]]*\s+(?=\S)")
# No chunk is longer than this many characters whatever its words (one "word" may be a 50 kB run of symbols).
MAX_CHUNK_CHARS = 8_000


@dataclass(frozen=True)
class Chunk:
    text: str
    position: int  # order in the document, from 0
    page: int | None
    headings: tuple[str, ...]

    @property
    def heading(self) -> str | None:
        return " > ".join(self.headings) if self.headings else None


def words(text: str) -> int:
    return len(_WORD.findall(text))


def _units(text: str, size: int) -> Iterator[str]:
    """Pieces of one paragraph, each within `size` words and MAX_CHUNK_CHARS: the paragraph, else its sentences,
    else word windows of an overlong sentence."""
    if words(text) <= size and len(text) <= MAX_CHUNK_CHARS:
        yield text
        return
    for sentence in _SENTENCE.split(text):
        sentence = sentence.strip()
        if not sentence:
            continue
        if words(sentence) <= size and len(sentence) <= MAX_CHUNK_CHARS:
            yield sentence
            continue
        for piece in chunk_text(sentence, size=size, overlap=0):
            for start in range(0, len(piece.text), MAX_CHUNK_CHARS):
                yield piece.text[start : start + MAX_CHUNK_CHARS]


def _sections(blocks: list[Block]) -> Iterator[tuple[int | None, tuple[str, ...], list[str]]]:
    """Runs of consecutive blocks on one page under one heading path."""
    key: tuple[int | None, tuple[str, ...]] | None = None
    texts: list[str] = []
    for b in blocks:
        if not b.text.strip():
            continue
        if (b.page, b.headings) != key:
            if key is not None and texts:
                yield key[0], key[1], texts
            key, texts = (b.page, b.headings), []
        texts.append(b.text.strip())
    if key is not None and texts:
        yield key[0], key[1], texts


def _tail(units: list[tuple[str, str]], overlap: int) -> list[tuple[str, str]]:
    """The last whole units of a chunk holding at most `overlap` words (for the start of the next chunk)."""
    kept: list[tuple[str, str]] = []
    total = 0
    for sep, text in reversed(units):
        n = words(text)
        if total + n > overlap:
            break
        kept.insert(0, (sep, text))
        total += n
    return kept


def _join(units: list[tuple[str, str]]) -> str:
    return "".join((sep if i else "") + text for i, (sep, text) in enumerate(units))


def chunk_blocks(blocks: list[Block], *, size: int, overlap: int) -> list[Chunk]:
    """The chunks of a parsed document in reading order (see the module docstring). `size` >= 1 words per chunk,
    `overlap` < `size` words repeated from the previous chunk of the same section."""
    if size < 1 or not 0 <= overlap < size:
        raise ValueError("chunking needs size >= 1 and 0 <= overlap < size")
    chunks: list[Chunk] = []
    for page, headings, texts in _sections(blocks):
        current: list[tuple[str, str]] = []  # (separator before it, text)
        count = 0
        fresh = 0  # units in `current` that are not overlap from the previous chunk

        for text in texts:
            for i, unit in enumerate(_units(text, size)):
                sep = " " if i else "\n\n"
                n = words(unit)
                chars = len(_join(current)) + len(sep) + len(unit)
                if current and (count + n > size or chars > MAX_CHUNK_CHARS):
                    if fresh:
                        chunks.append(Chunk(_join(current), len(chunks), page, headings))
                    current = _tail(current, overlap) if fresh else []
                    while current and (
                        sum(words(t) for _, t in current) + n > size
                        or len(_join(current)) + len(sep) + len(unit) > MAX_CHUNK_CHARS
                    ):
                        current.pop(0)
                    count = sum(words(t) for _, t in current)
                    fresh = 0
                current.append((sep, unit))
                count += n
                fresh += 1
        if current and fresh:
            chunks.append(Chunk(_join(current), len(chunks), page, headings))
    return chunks
