"""Parsing in a child process: a document never runs parser code in the serving or worker process.

Parsers are CPU work in C (pdfium, lxml) and in pure Python (python-docx, trafilatura): in a thread the pure-Python
ones would hold the interpreter lock against the event loop, a hostile file could spin past any limit (a thread
cannot be stopped), and a crash in C code would take the whole process down. Each parse runs in a process forked
from a forkserver that imported the parsers once (a fork costs milliseconds, not the imports' second); past
its limit it is killed, and a child that dies (a crash in C code, the memory killer) fails that document alone.
The forkserver also holds the serving process's main script (`_forkserver_main`), which a child would otherwise
import again for every document (~0.1 s of CPU each).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from multiprocessing import spawn
from multiprocessing.connection import Connection
from typing import Any

from plugins.ingestion.parsers import Parsed, ParseError, parse

# The main script's path, for plugins.ingestion._forkserver_main (imported by the forkserver alone).
MAIN_PATH_ENV = "_FAAS_FORKSERVER_MAIN_PATH"
PRELOAD = [
    "plugins.ingestion._forkserver_main",
    "plugins.ingestion.parsers",
    "charset_normalizer",
    "pypdfium2",
    "docx",
    "trafilatura",
]


def _child(conn: Connection, data: bytes, filename: str | None, content_type: str | None) -> None:
    result: tuple[str, Any]
    try:
        result = ("ok", parse(data, filename=filename, content_type=content_type))
    except ParseError as exc:
        result = ("refused", str(exc))
    except MemoryError:
        result = ("refused", "the document needs more memory than parsing may take")
    except Exception as exc:  # a parser library's own failure on a document it cannot read
        result = ("refused", f"the parser failed on this document ({type(exc).__name__})")
    conn.send(result)
    conn.close()


class ParserProcesses:
    """Parses documents in child processes (see the module docstring)."""

    def __init__(self) -> None:
        self._ctx = multiprocessing.get_context("forkserver")
        main = spawn.get_preparation_data("parser").get("init_main_from_path")
        # The forkserver (started on the first parse) inherits the environment: see _forkserver_main. Whatever the
        # variable held before is replaced, so the forkserver imports this process's main script or none.
        if main:
            os.environ[MAIN_PATH_ENV] = main
        else:
            os.environ.pop(MAIN_PATH_ENV, None)
        self._ctx.set_forkserver_preload(PRELOAD)

    async def parse(self, data: bytes, *, filename: str | None, content_type: str | None, limit: float) -> Parsed:
        """The parsed document; ParseError for a document the parser refuses, one that takes longer than
        `limit` seconds, or one its process died on."""
        receive, send = self._ctx.Pipe(duplex=False)
        proc = self._ctx.Process(target=_child, args=(send, data, filename, content_type), daemon=True)
        try:
            await asyncio.to_thread(proc.start)
            send.close()
            if not await asyncio.to_thread(receive.poll, limit):
                raise ParseError(f"parsing took longer than {limit:g} s")
            try:
                kind, value = await asyncio.to_thread(receive.recv)
            except EOFError:
                raise ParseError("the parser's process died on this document") from None
        finally:
            receive.close()
            if proc.is_alive():
                proc.kill()
            if proc.pid is not None:
                await asyncio.to_thread(proc.join)
        if kind != "ok":
            raise ParseError(value)
        parsed: Parsed = value
        return parsed
