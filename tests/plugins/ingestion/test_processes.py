"""Parsing in child processes: a result crosses back whole, a refusal keeps its reason, and a parse past its time
limit is killed and refused."""

from __future__ import annotations

import time

import pytest

from plugins.ingestion.parsers import ParseError
from plugins.ingestion.processes import ParserProcesses
from tests.plugins.ingestion.documents import MARKDOWN, pdf


async def test_documents_are_parsed_in_a_child_and_refusals_keep_their_reason() -> None:
    parsers = ParserProcesses()
    parsed = await parsers.parse(MARKDOWN, filename="s.md", content_type=None, limit=60)
    assert parsed.format == "md" and parsed.blocks[1].headings == ("Sharks", "Senses")
    parsed = await parsers.parse(pdf(["one", "two"]), filename=None, content_type="application/pdf", limit=60)
    assert [b.page for b in parsed.blocks] == [1, 2]
    with pytest.raises(ParseError, match="PDF cannot be opened"):
        await parsers.parse(b"%PDF-1.4 nothing else", filename="x.pdf", content_type=None, limit=60)


async def test_a_parse_past_its_limit_is_killed() -> None:
    parsers = ParserProcesses()
    rows = "".join(f"{i},{'word ' * 20},{i * 7}\n" for i in range(200_000)).encode()  # seconds of CSV parsing
    started = time.monotonic()
    with pytest.raises(ParseError, match=r"longer than 0\.2 s"):
        await parsers.parse(b"id,text,n\n" + rows, filename="big.csv", content_type=None, limit=0.2)
    assert time.monotonic() - started < 5
