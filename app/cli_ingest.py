"""`faas ingest`: upload files or folders to a running server's ingestion plugin, follow every job, summarise.

It talks HTTP only (`POST /api/v1/ingestion/jobs`, then `GET /api/v1/jobs/{id}`), with the tenant's API key, so it
works against any deployment. Files go a few per request (at most `BATCH_FILES` and `BATCH_BYTES`); a folder is
walked recursively for the formats the plugin parses. Each job shows a progress bar (redrawn in place on a
terminal, one line per change otherwise) until it succeeds or fails; then a summary of documents, chunks and
failures with their reasons. The exit status is 1 when any job failed or a file was refused, 2 when nothing could
be sent at all.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx

EXTENSIONS = {".txt", ".text", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx", ".csv", ".json"}
BATCH_FILES = 10
BATCH_BYTES = 8 * 1024 * 1024
POLL_SECONDS = 0.5
FINISHED = ("succeeded", "failed", "cancelled")


@dataclass
class Tracked:
    name: str
    job_id: str | None = None
    status: str = "queued"
    stage: str | None = None
    progress: int = 0
    error: str | None = None
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.status in FINISHED


def collect(paths: list[str]) -> tuple[list[Path], list[str]]:
    """Files to send (a folder: its files of known formats, recursively, in name order) and the paths that are
    neither file nor folder."""
    files: list[Path] = []
    missing: list[str] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in EXTENSIONS)
        elif p.is_file():
            files.append(p)
        else:
            missing.append(raw)
    return files, missing


def _batches(files: list[Path]) -> list[list[Path]]:
    out: list[list[Path]] = [[]]
    size = 0
    for f in files:
        n = f.stat().st_size
        if out[-1] and (len(out[-1]) >= BATCH_FILES or size + n > BATCH_BYTES):
            out.append([])
            size = 0
        out[-1].append(f)
        size += n
    return [b for b in out if b]


def _problem(r: httpx.Response) -> str:
    try:
        return str(r.json().get("detail") or r.text)
    except ValueError:
        return r.text[:200] or f"HTTP {r.status_code}"


def _bar(t: Tracked, width: int) -> str:
    filled = t.progress * 20 // 100
    state = t.status if t.done else (t.stage or t.status)
    name = t.name if len(t.name) <= width else "…" + t.name[-(width - 1) :]
    return f"{name:<{width}}  [{'#' * filled}{'-' * (20 - filled)}] {t.progress:>3}%  {state}"


class Progress:
    """Bars for the jobs: redrawn in place on a terminal, else one line per job per change."""

    def __init__(self, out: TextIO, jobs: list[Tracked]) -> None:
        self.out = out
        self.jobs = jobs
        self.tty = out.isatty()
        self.width = min(48, max((len(j.name) for j in jobs), default=10))
        self.shown: dict[int, str] = {}
        self.drawn = 0

    def draw(self) -> None:
        lines = [_bar(j, self.width) for j in self.jobs]
        if self.tty:
            if self.drawn:
                self.out.write(f"\x1b[{self.drawn}F")
            self.out.write("".join(f"\x1b[2K{line}\n" for line in lines))
            self.drawn = len(lines)
        else:
            for i, line in enumerate(lines):
                if self.shown.get(i) != line:
                    self.out.write(line + "\n")
                    self.shown[i] = line
        self.out.flush()


def ingest(
    paths: list[str], *, collection: str, url: str, key: str, out: TextIO = sys.stdout, timeout: float = 3600.0
) -> int:
    files, missing = collect(paths)
    for m in missing:
        print(f"faas: {m}: no such file or folder", file=sys.stderr)
    if not files:
        print("faas: nothing to ingest (no file of a known format)", file=sys.stderr)
        return 2
    jobs: list[Tracked] = []
    refused: list[Tracked] = []
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=120.0, trust_env=False) as client:
        for batch in _batches(files):
            handles = [f.open("rb") for f in batch]
            try:
                parts = [("file", (f.name, h, "application/octet-stream")) for f, h in zip(batch, handles, strict=True)]
                try:
                    r = client.post("/api/v1/ingestion/jobs", data={"collection": collection}, files=parts)
                except httpx.HTTPError as exc:
                    print(f"faas: cannot reach {url}: {exc}", file=sys.stderr)
                    return 2
            finally:
                for h in handles:
                    h.close()
            if r.status_code == 401 or r.status_code == 403:
                print(f"faas: the server refused the key: {_problem(r)}", file=sys.stderr)
                return 2
            if r.status_code == 404:
                print(f"faas: {_problem(r)}", file=sys.stderr)
                return 2
            if r.status_code != 202:
                for f in batch:
                    refused.append(Tracked(str(f), status="failed", error=_problem(r)))
                continue
            for f, job in zip(batch, r.json()["jobs"], strict=True):
                jobs.append(Tracked(str(f), job_id=job["id"], status=job["status"]))
        bars = Progress(out, jobs)
        deadline = time.monotonic() + timeout
        while True:
            for t in jobs:
                if t.done:
                    continue
                r = client.get(f"/api/v1/jobs/{t.job_id}")
                if r.status_code != 200:
                    t.status, t.error = "failed", _problem(r)
                    continue
                job = r.json()
                t.status, t.stage, t.progress = job["status"], job["stage"], job["progress"]
                t.error, t.result = job.get("error"), job.get("result") or {}
            bars.draw()
            if all(t.done for t in jobs) or time.monotonic() > deadline:
                break
            time.sleep(POLL_SECONDS)
    return _summary(out, jobs + refused)


def _summary(out: TextIO, jobs: list[Tracked]) -> int:
    ok = [t for t in jobs if t.status == "succeeded"]
    bad = [t for t in jobs if t.status != "succeeded"]
    unchanged = sum(1 for t in ok if t.result.get("unchanged"))
    chunks = sum(int(t.result.get("chunk_count", 0)) for t in ok)
    pages = sum(int(t.result.get("pages", 0)) for t in ok)
    out.write(
        f"{len(ok)} of {len(jobs)} documents ingested ({unchanged} unchanged), {pages} pages, {chunks} chunks, "
        f"{len(bad)} failed\n"
    )
    for t in bad:
        reason = t.error or (f"still {t.status} when the wait ended" if not t.done else t.status)
        out.write(f"failed: {t.name}: {reason}\n")
    out.flush()
    return 1 if bad else 0
