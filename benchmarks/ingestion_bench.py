"""Ingestion end to end: pages and chunks per second for a folder of mixed documents, next to the raw embedding
rate of the same chunks on the same machine (target: ingestion at >= 80% of it, embedding being the bottleneck).

The documents are made here from text this machine ships (the manual pages in /usr/share/man/man1): multi-page
PDFs, Word documents, HTML pages, Markdown, plain text, CSV and JSON, in a temporary folder. The app runs in-process
(gateway, rag, ingestion; the gateway's local all-MiniLM-L6-v2, nothing downloaded) on an embedded PostgreSQL with
its job worker on. Every file is uploaded through the HTTP API (multipart, 10 a request) and the clock stops when
the last job has finished. Then the raw rate: the very chunk texts the jobs produced, embedded through the gateway's
interface in batches of 64, with no parsing, chunking or storing: by one caller, and by as many callers at once as
the worker runs jobs (the local model runs one text per thread, so concurrent callers use both cores).

    .venv/bin/python benchmarks/ingestion_bench.py [--docs 60] [--pages 8] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import random
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.plugins import discover
from benchmarks._app import client, embedded_server, fresh_database, running_app
from plugins.gateway.interface import GATEWAY
from tests.plugins.ingestion.documents import docx, pdf

FORMATS = ("pdf", "docx", "html", "md", "txt", "csv", "json")


def man_paragraphs(limit: int) -> list[str]:
    """Sentences of prose from the manual pages (troff markup dropped), in a stable order."""
    out: list[str] = []
    for path in sorted(Path("/usr/share/man/man1").glob("*.1.gz"))[:4000]:
        try:
            raw = gzip.decompress(path.read_bytes()).decode("utf-8", "replace")
        except (OSError, EOFError):
            continue
        text = " ".join(line for line in raw.splitlines() if line and not line.startswith((".", "'", '\\"')))
        text = re.sub(r"\\f[BIRP]|\\-|\\\(..|\\[a-z&]|\\", "", text)
        words = text.split()
        for i in range(0, len(words) - 60, 60):
            out.append(" ".join(words[i : i + 60]).encode("latin-1", "replace").decode("latin-1"))
            if len(out) >= limit:
                return out
    return out


def make_folder(folder: Path, docs: int, pages: int) -> int:
    """`docs` documents of every format in turn; returns the number of pages (a PDF's pages, 1 for the rest)."""
    rng = random.Random(7)
    paras = man_paragraphs(docs * pages * 3 + 100)
    take = iter(paras * 3)
    total = 0
    for i in range(docs):
        fmt = FORMATS[i % len(FORMATS)]
        body = [next(take) for _ in range(pages * 3)]
        name = folder / f"doc{i:03d}.{fmt}"
        if fmt == "pdf":
            page_texts = []
            for p in range(pages):
                lines = " ".join(body[p * 3 : p * 3 + 3]).split()
                page_texts.append("\n".join(" ".join(lines[j : j + 12]) for j in range(0, len(lines), 12)))
            name.write_bytes(pdf(page_texts))
            total += pages
            continue
        total += 1
        if fmt == "docx":
            items = [("h1", f"Manual {i}")] + [("h2" if k % 4 == 0 else "p", t) for k, t in enumerate(body)]
            name.write_bytes(docx(items))
        elif fmt == "html":
            html = "".join(f"<h2>Part {k}</h2><p>{t}</p>" if k % 3 == 0 else f"<p>{t}</p>" for k, t in enumerate(body))
            name.write_text(f"<html><body><nav>Home Shop</nav><article><h1>Doc {i}</h1>{html}</article></body></html>")
        elif fmt == "md":
            name.write_text(f"# Manual {i}\n\n" + "\n\n".join(f"## Part {k}\n\n{t}" for k, t in enumerate(body)))
        elif fmt == "txt":
            name.write_text("\n\n".join(body))
        elif fmt == "csv":
            rows = [f'{k},"{t[:200]}",{rng.randint(1, 999)}' for k, t in enumerate(body)]
            name.write_text("id,summary,score\n" + "\n".join(rows) + "\n")
        else:
            import json

            name.write_text(json.dumps([{"id": k, "text": t} for k, t in enumerate(body)]))
    return total


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="faas-ingest-bench-") as tmp:
        folder = Path(tmp)
        pages = await asyncio.to_thread(make_folder, folder, args.docs, args.pages)
        files = sorted(await asyncio.to_thread(lambda: list(folder.iterdir())))
        size = sum(len(f.read_bytes()) for f in files)
        print(f"folder: {len(files)} documents ({', '.join(FORMATS)}), {pages} pages, {size / 1e6:.2f} MB")
        with embedded_server() as server:
            url = await fresh_database(server)
            plugins = [p for p in discover() if p.name in ("gateway", "rag", "ingestion")]
            env = {"FAAS_JOBS_WORKER": "on", "FAAS_JOBS_CONCURRENCY": str(args.concurrency)}
            async with running_app(url, plugins, **env) as (app, state, tenant):
                async with client(app, tenant["api_key"]) as api:
                    r = await api.post("/api/v1/rag/collections", json={"name": "bench"})
                    r.raise_for_status()
                    coll = r.json()["id"]
                    gateway = state["services"].get(GATEWAY)
                    await gateway.embed_texts(tenant_id=tenant["tenant_id"], texts=["warm up"] * 8)
                    started = time.perf_counter()
                    job_ids: list[str] = []
                    for i in range(0, len(files), 10):
                        parts = [("file", (f.name, f.read_bytes())) for f in files[i : i + 10]]
                        r = await api.post("/api/v1/ingestion/jobs", data={"collection": coll}, files=parts)
                        r.raise_for_status()
                        job_ids += [j["id"] for j in r.json()["jobs"]]
                    accepted = time.perf_counter() - started
                    results: dict[str, Any] = {}
                    while len(results) < len(job_ids):  # one list request a poll: the clock is the worker's
                        await asyncio.sleep(0.25)
                        listed = (await api.get("/api/v1/ingestion/jobs", params={"limit": 100})).json()["data"]
                        for job in listed:
                            if job["status"] in ("succeeded", "failed", "cancelled"):
                                results[job["id"]] = job
                    elapsed = time.perf_counter() - started
                    failed = [j for j in results.values() if j["status"] != "succeeded"]
                    chunks = sum(j["result"]["chunk_count"] for j in results.values() if j["status"] == "succeeded")
                    print(f"uploads accepted in {accepted:.2f} s ({len(files) / accepted:.1f} documents/s)")
                    print(
                        f"ingestion end to end: {elapsed:.2f} s, {pages / elapsed:.1f} pages/s, "
                        f"{chunks / elapsed:.1f} chunks/s, {len(files) / elapsed:.2f} documents/s "
                        f"({chunks} chunks, {len(failed)} failed)"
                    )
                    texts: list[str] = []
                    for job in results.values():
                        if job["status"] != "succeeded":
                            continue
                        doc = job["result"]["document_id"]
                        ids = [doc] + [f"{doc}~{k}" for k in range(1, job["result"]["parts"])]
                        for d in ids:
                            texts += [
                                c["text"]
                                for c in (await api.get(f"/api/v1/rag/collections/{coll}/documents/{d}")).json()[
                                    "chunks"
                                ]
                            ]

                    async def embed_all(streams: int) -> float:
                        async def stream(part: list[str]) -> None:
                            for i in range(0, len(part), 64):
                                await gateway.embed_texts(tenant_id=tenant["tenant_id"], texts=part[i : i + 64])

                        t0 = time.perf_counter()
                        await asyncio.gather(*(stream(texts[k::streams]) for k in range(streams)))
                        return len(texts) / (time.perf_counter() - t0)

                    rate = chunks / elapsed
                    for streams in sorted({1, args.concurrency}):
                        raw_rate = await embed_all(streams)
                        print(
                            f"raw embedding of the same {len(texts)} chunks, {streams} caller(s): {raw_rate:.1f} "
                            f"chunks/s; ingestion / raw: {100 * rate / raw_rate:.0f}% (target >= 80%)"
                        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", type=int, default=70, help="documents in the folder (formats in turn)")
    p.add_argument("--pages", type=int, default=8, help="pages per PDF; each document holds 3 paragraphs a page")
    p.add_argument("--concurrency", type=int, default=4, help="jobs the worker runs at once")
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
