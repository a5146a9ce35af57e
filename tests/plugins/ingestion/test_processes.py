"""Parsing in child processes: a result crosses back whole, a refusal keeps its reason, and a parse past its time
limit is killed and refused."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from plugins.ingestion.parsers import ParseError
from plugins.ingestion.processes import ParserProcesses
from tests.plugins.ingestion.documents import MARKDOWN, pdf

ROOT = Path(__file__).resolve().parents[3]


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


# A serving process's main script: records each time its top level runs, then parses five documents.
MAIN_SCRIPT = """
import asyncio, os
with open(os.environ["RUNS_FILE"], "a") as runs:
    runs.write(__name__ + "\\n")
from plugins.ingestion.processes import ParserProcesses

async def main():
    parsers = ParserProcesses()
    for i in range(5):
        parsed = await parsers.parse(b"hello %d" % i, filename="a.txt", content_type=None, limit=60)
        assert parsed.blocks[0].text == "hello %d" % i

if __name__ == "__main__":
    asyncio.run(main())
"""


def test_a_parse_child_does_not_run_the_main_script_again(tmp_path: Path) -> None:
    """The forkserver holds the main script (CPython 3.11's own `__main__` preload never got its path), so a child
    does not import it again for every document: once as `__main__`, at most once more in the forkserver."""
    script, runs = tmp_path / "serve.py", tmp_path / "runs.txt"
    script.write_text(MAIN_SCRIPT)
    env = {**os.environ, "RUNS_FILE": str(runs), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(script)], env=env, cwd=ROOT, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    names = runs.read_text().split()
    assert names.count("__main__") == 1 and names.count("__mp_main__") <= 1, names
