"""RAG: retrieval quality (nDCG@10, Recall@10) on a real corpus, search latency at 100k chunks, documents/s added.

Everything goes through the public API (the app in-process with its lifespan, on an embedded PostgreSQL; the
gateway's local all-MiniLM-L6-v2 computes every embedding, nothing is downloaded).

- quality: a known-item set built from text this machine ships. `man`: the manual pages in /usr/share/man/man1
  (the NAME line's summary, "list directory contents", is the query; the DESCRIPTION section, its first
  `--doc-words` words, is its one relevant document). `debian`: the installed packages' descriptions in
  /var/lib/dpkg/status (short description = query, long description = document; apt's own lists here carry no
  long descriptions; 759 packages are installed here). `pydoc`: docstrings of this Python's standard library and
  installed packages (summary line = query, the paragraphs after it = document). Documents are added 100 a call
  (chunk size 2000 words: one chunk per document, so BM25 scores whole documents like the reference), then every
  query is searched in each mode (top 10).
  The reference BM25 is bm25s (Lucene IDF, k1 1.2, b 0.75, English stop words, Snowball stemmer from PyStemmer)
  on the same documents, installed as the `bench` extra; without it that line is skipped.
- add rate: documents per second for the corpus above, end to end (HTTP, chunking, embedding, indexing).
- scale: 100,000 chunks of synthetic text (Zipf words) with random unit vectors sent with each document (the
  `embedding` field: that path skips the model, so 100k chunks load in minutes), in one large collection of one
  tenant and many small collections of other tenants. Then search latency p50/p99 through the API for the large
  collection (HNSW with iterative scan) and for a small tenant's collection inside the same table (exact), per mode;
  every search is filtered by tenant and collection, as every search is.

    .venv/bin/pip install -e '.[bench]'   # bm25s + PyStemmer, for the reference line
    .venv/bin/python benchmarks/rag_bench.py [--corpus man|debian|pydoc|all] [--n 3000] [--chunks 100000] [--sweep]
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import gzip
import math
import random
import re
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from app.plugins import discover
from benchmarks._app import client, embedded_server, fresh_database, percentiles, running_app

URL = "/api/v1/rag/collections"
MODES = ("keyword", "dense", "hybrid")


# ---- corpora ------------------------------------------------------------------------------------------------


def _roff_text(line: str) -> str:
    line = re.sub(r"\\f[BIRP]|\\f\[[A-Z]*\]|\\f\(..|\\[&/,|^]|\\\(..|\\\*\(..|\\\*.", "", line)
    return line.replace("\\-", "-").replace("\\e", "\\").replace('"', " ").strip()


def man_page(path: Path) -> tuple[str, str] | None:
    """(summary, description) of a man(7) page, or None when it has no usable NAME or DESCRIPTION."""
    try:
        raw = gzip.open(path, "rt", encoding="utf-8", errors="replace").read() if path.suffix == ".gz" else ""
    except (OSError, EOFError):
        return None
    section, name, desc = "", [], []
    for line in raw.splitlines():
        if line.startswith(".so "):
            return None
        if line.startswith((".SH", ".Sh")):
            section = _roff_text(line[3:]).upper()
            continue
        if line.startswith(("'", '.\\"')):
            continue
        if line.startswith("."):
            macro, _, rest = line.partition(" ")
            if macro in (".B", ".I", ".BR", ".IR", ".RB", ".RI", ".BI", ".IB", ".Nm", ".Nd", ".Ar", ".Fl"):
                line = rest
            else:
                continue
        text = _roff_text(line)
        if section == "NAME":
            name.append(text)
        elif section == "DESCRIPTION":
            desc.append(text)
    head = " ".join(name)
    if " - " not in head:
        return None
    summary = head.split(" - ", 1)[1].strip()
    return (summary, " ".join(desc)) if summary and desc else None


def man_corpus(n: int, doc_words: int, seed: int) -> list[tuple[str, str]]:
    pairs: dict[str, tuple[str, str]] = {}
    seen_docs: set[str] = set()
    for path in sorted(Path("/usr/share/man/man1").glob("*.gz")):
        if path.is_symlink():
            continue
        found = man_page(path)
        if found is None:
            continue
        summary, desc = found
        words = desc.split()
        if len(summary.split()) < 3 or len(words) < 20:
            continue
        doc = " ".join(words[:doc_words])
        key = summary.lower()
        if key in pairs or doc in seen_docs:  # one relevant document per query, no duplicate documents
            continue
        pairs[key] = (summary, doc)
        seen_docs.add(doc)
    items = list(pairs.values())
    random.Random(seed).shuffle(items)
    return items[:n]


def debian_corpus(n: int, seed: int) -> list[tuple[str, str]]:
    records: list[dict[str, str]] = []
    current: dict[str, str] = {}
    field = ""
    for line in Path("/var/lib/dpkg/status").read_text(encoding="utf-8", errors="replace").splitlines():
        if not line:
            if current:
                records.append(current)
            current, field = {}, ""
        elif line.startswith(" ") and field:
            current[field] += "\n" + line
        else:
            field, _, value = line.partition(":")
            current[field] = value.strip()
    if current:
        records.append(current)
    pairs: dict[str, tuple[str, str]] = {}
    for r in records:
        short, _, long = r.get("Description", "").partition("\n")
        body = " ".join(x.strip() for x in long.splitlines() if x.strip() != ".")
        if short and len(body.split()) >= 10 and short.lower() not in pairs:
            pairs[short.lower()] = (short, body)
    items = list(pairs.values())
    random.Random(seed).shuffle(items)
    return items[:n]


def pydoc_corpus(n: int, seed: int) -> list[tuple[str, str]]:
    """Docstrings of the Python this runs on (its standard library and this environment's packages): a function's,
    class's or module's summary line is the query, the paragraphs after it the document."""
    paths = sysconfig.get_paths()
    roots = [Path(paths["stdlib"]), Path(paths["purelib"])]
    skip = {"test", "tests", "idlelib", "lib2to3", "site-packages", "turtledemo", "ensurepip", "_vendor", "pip"}
    skip.add("setuptools")
    pairs: dict[str, tuple[str, str]] = {}
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            if skip & set(path.relative_to(root).parts):
                continue
            try:
                tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
            except (SyntaxError, ValueError):
                continue
            for node in ast.walk(tree):
                doc = ast.get_docstring(node) if isinstance(node, kinds) else None
                if not doc:
                    continue
                head, _, rest = doc.strip().partition("\n\n")
                short, body = " ".join(head.split()), " ".join(rest.split())
                if 3 <= len(short.split()) <= 20 and len(body.split()) >= 20 and short.lower() not in pairs:
                    pairs[short.lower()] = (short, body)
    items = list(pairs.values())
    random.Random(seed).shuffle(items)
    return items[:n]


# ---- quality --------------------------------------------------------------------------------------------------


def ndcg_recall(ranked: list[str], relevant: str, k: int = 10) -> tuple[float, float]:
    top = ranked[:k]
    if relevant not in top:
        return 0.0, 0.0
    return 1.0 / math.log2(top.index(relevant) + 2), 1.0


def distinct(ids: list[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def reference_bm25(corpus: list[tuple[str, str]]) -> tuple[float, float] | None:
    try:
        import bm25s
        import Stemmer
    except ImportError:
        return None
    stemmer = Stemmer.Stemmer("english")
    docs = [d for _, d in corpus]
    retriever = bm25s.BM25(k1=1.2, b=0.75, method="lucene")
    retriever.index(bm25s.tokenize(docs, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False)
    queries = bm25s.tokenize([q for q, _ in corpus], stopwords="en", stemmer=stemmer, show_progress=False)
    results, _ = retriever.retrieve(queries, k=10, show_progress=False, n_threads=1)
    totals = [0.0, 0.0]
    for i, row in enumerate(results):
        nd, rc = ndcg_recall([str(int(x)) for x in row], str(i))
        totals[0] += nd
        totals[1] += rc
    return totals[0] / len(corpus), totals[1] / len(corpus)


async def add_all(api: httpx.AsyncClient, coll: str, docs: list[dict[str, Any]], per_call: int = 100) -> float:
    """Seconds to add `docs`, `per_call` a request, one request at a time."""
    t0 = time.perf_counter()
    for i in range(0, len(docs), per_call):
        r = await api.post(f"{URL}/{coll}/documents", json=docs[i : i + per_call])
        r.raise_for_status()
        assert r.json()["searchable"] is True
    return time.perf_counter() - t0


async def quality(
    api: httpx.AsyncClient, corpus: list[tuple[str, str]], label: str, sweep: list[tuple[int, float]]
) -> None:
    r = await api.post(URL, json={"name": f"eval-{label}", "chunking": {"size": 2000, "overlap": 0.0}})
    r.raise_for_status()
    coll = r.json()["id"]
    docs = [{"id": str(i), "text": d} for i, (_, d) in enumerate(corpus)]
    seconds = await add_all(api, coll, docs)
    words = sum(len(d.split()) for _, d in corpus)
    print(
        f"[{label}] added {len(docs)} documents ({words / len(docs):.0f} words each on average) in {seconds:.1f} s: "
        f"{len(docs) / seconds:.1f} documents/s end to end (HTTP, chunking, local embedding, indexing)"
    )
    for mode in MODES:
        totals, latencies = [0.0, 0.0], []
        for i, (query, _) in enumerate(corpus):
            t0 = time.perf_counter()
            r = await api.post(f"{URL}/{coll}/search", json={"query": query, "mode": mode, "top_k": 10})
            latencies.append(time.perf_counter() - t0)
            r.raise_for_status()
            nd, rc = ndcg_recall(distinct([h["document_id"] for h in r.json()["hits"]]), str(i))
            totals[0] += nd
            totals[1] += rc
        n = len(corpus)
        print(
            f"[{label}] {mode:8s} nDCG@10 {totals[0] / n:.3f}  Recall@10 {totals[1] / n:.3f}  "
            f"search {percentiles(latencies)}"
        )
    for rrf_k, keyword_weight in sweep:
        totals = [0.0, 0.0]
        fusion = {"fusion": "rrf", "rrf_k": rrf_k} if rrf_k else {"fusion": "relative"}
        body = {"mode": "hybrid", "top_k": 10, **fusion, "weights": {"dense": 1.0, "keyword": keyword_weight}}
        for i, (query, _) in enumerate(corpus):
            r = await api.post(f"{URL}/{coll}/search", json={"query": query, **body})
            r.raise_for_status()
            nd, rc = ndcg_recall(distinct([h["document_id"] for h in r.json()["hits"]]), str(i))
            totals[0] += nd
            totals[1] += rc
        n = len(corpus)
        print(
            f"[{label}] hybrid {f'rrf_k {rrf_k:3d}' if rrf_k else 'relative  '}, keyword weight {keyword_weight:.1f}: "
            f"nDCG@10 {totals[0] / n:.3f}  "
            f"Recall@10 {totals[1] / n:.3f}"
        )
    ref = await asyncio.to_thread(reference_bm25, corpus)
    if ref is None:
        print(f"[{label}] reference BM25: bm25s/PyStemmer not installed (pip install -e '.[bench]')")
    else:
        print(f"[{label}] bm25s    nDCG@10 {ref[0]:.3f}  Recall@10 {ref[1]:.3f}  (reference BM25, same documents)")


# ---- scale ----------------------------------------------------------------------------------------------------


def synthetic(rng: random.Random, vocab: list[str], weights: list[float], n: int, prefix: str) -> list[dict[str, Any]]:
    docs = []
    for i in range(n):
        words = rng.choices(vocab, weights=weights, k=rng.randint(30, 80))
        v = [rng.gauss(0.0, 1.0) for _ in range(384)]
        norm = math.sqrt(sum(x * x for x in v))
        docs.append(
            {
                "id": f"{prefix}{i}",
                "text": " ".join(words),
                "embedding": [round(x / norm, 6) for x in v],
                "metadata": {"shard": i % 10},
            }
        )
    return docs


async def scale(app: Any, admin_key: str, chunks: int, small: int, queries: int) -> None:
    rng = random.Random(11)
    vocab = [f"w{i:x}q" for i in range(20_000)]
    weights = [1.0 / (r + 1) for r in range(len(vocab))]
    tenants = []
    async with client(app, admin_key) as admin:
        for i in range(1 + small):
            r = await admin.post("/api/v1/admin/tenants", json={"name": f"scale-{i}-{rng.getrandbits(24):x}"})
            r.raise_for_status()
            tenants.append(r.json()["api_key"])
    per_small = 1000
    big_n = chunks - small * per_small
    apis = [client(app, key) for key in tenants]
    try:
        colls = []
        for api in apis:
            r = await api.post(URL, json={"name": "scale"})
            r.raise_for_status()
            colls.append(r.json()["id"])
        t0 = time.perf_counter()
        loaded = 0
        batch = 2_000
        for start in range(0, big_n, batch):
            docs = await asyncio.to_thread(synthetic, rng, vocab, weights, min(batch, big_n - start), f"b{start}-")
            await add_all(apis[0], colls[0], docs)
            loaded += len(docs)
        for api, coll in zip(apis[1:], colls[1:], strict=True):
            docs = await asyncio.to_thread(synthetic, rng, vocab, weights, per_small, "s")
            await add_all(api, coll, docs)
            loaded += len(docs)
        seconds = time.perf_counter() - t0
        print(
            f"[scale] loaded {loaded} chunks (vectors sent with the documents, 100 a call) in {seconds:.0f} s: "
            f"{loaded / seconds:.0f} documents/s through the API"
        )
        mid = vocab[50:2000]
        for label, api, coll in (("large collection", apis[0], colls[0]), ("small tenant", apis[1], colls[1])):
            for mode in MODES:
                samples = []
                short = 0
                for q in range(queries + 10):
                    query = " ".join(rng.sample(mid, 3))
                    t0 = time.perf_counter()
                    r = await api.post(f"{URL}/{coll}/search", json={"query": query, "mode": mode, "top_k": 10})
                    elapsed = time.perf_counter() - t0
                    r.raise_for_status()
                    short += len(r.json()["hits"]) < 10 and mode != "keyword"
                    if q >= 10:  # warm-up
                        samples.append(elapsed)
                print(f"[scale] {label:16s} {mode:8s} {percentiles(samples)}  (dense/hybrid short of 10: {short})")
            filtered = []
            for _ in range(queries):
                query = " ".join(rng.sample(mid, 3))
                t0 = time.perf_counter()
                r = await api.post(
                    f"{URL}/{coll}/search", json={"query": query, "mode": "hybrid", "filters": {"shard": 3}}
                )
                filtered.append(time.perf_counter() - t0)
                assert all(h["metadata"]["shard"] == 3 for h in r.json()["hits"])
            print(f"[scale] {label:16s} hybrid + metadata filter (10%) {percentiles(filtered)}")
    finally:
        for api in apis:
            await api.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--corpus", choices=("man", "debian", "pydoc", "all"), default="all")
    parser.add_argument("--n", type=int, default=3000, help="documents (and queries) of the quality set")
    parser.add_argument("--doc-words", type=int, default=200, help="words of a man page's DESCRIPTION kept")
    parser.add_argument("--chunks", type=int, default=100_000, help="chunks in the table for the latency runs")
    parser.add_argument("--small-tenants", type=int, default=10, help="tenants of 1,000 chunks each among them")
    parser.add_argument("--queries", type=int, default=200, help="searches per latency line")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument(
        "--sweep", action="store_true", help="also hybrid with other rrf_k and keyword weights (tuned on the test set!)"
    )
    parser.add_argument("--skip-scale", action="store_true")
    args = parser.parse_args()
    plugins = [p for p in discover() if p.name in ("gateway", "rag")]
    with embedded_server() as server_url:
        url = await fresh_database(server_url)
        async with running_app(url, plugins) as (app, _state, tenant):
            if not args.skip_quality:
                async with client(app, tenant["api_key"]) as api:
                    # rrf_k 0 stands for relative score fusion
                    sweep = [(k, w) for k in (0, 10, 60) for w in (0.7, 1.0, 1.5)] if args.sweep else []
                    if args.corpus in ("man", "all"):
                        await quality(api, man_corpus(args.n, args.doc_words, seed=5), "man", sweep)
                    if args.corpus in ("debian", "all"):
                        await quality(api, debian_corpus(args.n, seed=5), "debian", sweep)
                    if args.corpus in ("pydoc", "all"):
                        await quality(api, pydoc_corpus(args.n, seed=5), "pydoc", sweep)
            if not args.skip_scale:
                from benchmarks._app import ADMIN_KEY

                await scale(app, ADMIN_KEY, args.chunks, args.small_tenants, args.queries)


if __name__ == "__main__":
    asyncio.run(main())
