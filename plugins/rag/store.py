"""SQL of the rag plugin: collections (`rag_collections`), documents (`rag_documents`), chunks (`rag_chunks`) and
per-collection document frequencies (`rag_terms`).

Invariants:
- Every query names the tenant and the collection; a collection of another tenant is NotFound, like a missing one.
- A write to a collection (add, replace, delete) locks the collection's row first, so writers of one collection
  take turns (its counters and term frequencies stay exact, and they never deadlock on `rag_terms`), and the old
  chunks of a replaced document go and the new ones arrive in one transaction: a search sees one or the other.
- `rag_terms.df` counts the collection's chunks holding each term; `chunk_count` and `total_length` are the
  collection's chunks and their token lengths (BM25's N and average length).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

import asyncpg

from app.codec import ascii_json, loads
from app.db import Database
from app.errors import Conflict, NotFound
from app.pagination import Page, decode_cursor, encode_cursor
from app.tenancy import new_id
from plugins.rag import bm25

INDEXED_DIMS = 384  # the dimension the migration's partial HNSW index covers
OFF_LOOP_CHUNKS = 200


@dataclass(frozen=True)
class CollectionRow:
    id: str
    name: str
    embedding_model: str
    dims: int
    chunk_size: int
    chunk_overlap: float
    document_count: int
    chunk_count: int
    created_at: datetime


@dataclass(frozen=True)
class NewChunk:
    document_id: str
    seq: int
    text: str
    metadata: dict[str, Any]
    page: int | None
    heading: str | None
    start: int
    end: int
    embedding: list[float]


@dataclass(frozen=True)
class NewDocument:
    id: str
    metadata: dict[str, Any]
    length: int
    chunks: list[NewChunk]


@dataclass(frozen=True)
class DocumentRow:
    id: str
    metadata: dict[str, Any]
    chunk_count: int
    length: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ChunkRow:
    id: int
    document_id: str
    seq: int
    text: str
    metadata: dict[str, Any]
    page: int | None
    heading: str | None
    start: int
    end: int
    score: float


_COLLECTION = (
    "SELECT id, name, embedding_model, dims, chunk_size, chunk_overlap, document_count, chunk_count, created_at "
    "FROM rag_collections"
)


def _collection(r: Any) -> CollectionRow:
    return CollectionRow(**dict(r))


def _document(r: Any) -> DocumentRow:
    return DocumentRow(
        id=r["id"],
        metadata=loads(r["metadata"]),
        chunk_count=r["chunk_count"],
        length=r["length"],
        created_at=r["created_at"],
        updated_at=r["updated_at"],
    )


def _chunk(r: Any) -> ChunkRow:
    return ChunkRow(
        id=r["id"],
        document_id=r["document_id"],
        seq=r["seq"],
        text=r["text"],
        metadata=loads(r["metadata"]),
        page=r["page"],
        heading=r["heading"],
        start=r["start_char"],
        end=r["end_char"],
        score=float(r["score"]),
    )


def _missing_collection(collection_id: str) -> NotFound:
    return NotFound(f"collection {collection_id!r} does not exist")


def vector_literal(values: Sequence[float]) -> str:
    return "[" + ",".join(repr(float(v)) for v in values) + "]"


def _chunk_rows(
    tenant_id: str,
    collection_id: str,
    chunks: Sequence[NewChunk],
    tokens: Sequence[tuple[list[int], list[int]]],
    avgdl: float,
) -> list[tuple[Any, ...]]:
    return [
        (
            tenant_id,
            collection_id,
            c.document_id,
            c.seq,
            c.text,
            ascii_json(c.metadata),
            c.page,
            c.heading,
            c.start,
            c.end,
            sum(tfs),
            terms,
            tfs,
            bm25.chunk_vector(terms, tfs, avgdl),
            len(c.embedding),
            vector_literal(c.embedding),
        )
        for c, (terms, tfs) in zip(chunks, tokens, strict=True)
    ]


@dataclass
class Search:
    """One search: the SQL is built from these (filters become parameters, never SQL text)."""

    tenant_id: str
    collection: CollectionRow
    query: str
    vector: list[float] | None
    mode: str
    top_k: int
    filters: list[list[dict[str, Any]]]  # per condition: the metadata objects any one of which must be contained
    dense_weight: float
    keyword_weight: float
    fusion: str  # "relative" or "rrf" (see search_sql)
    rrf_k: int
    exact: bool
    ef_search: int


class RagStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    @asynccontextmanager
    async def _transaction(self, **options: Any) -> AsyncIterator[Any]:
        """A pooled asyncpg connection inside one transaction (`options`: asyncpg's isolation, readonly)."""
        async with self.db.connection() as conn:
            raw = conn.raw_connection
            async with raw.transaction(**options):
                yield raw

    # ---- collections ---------------------------------------------------------------------------------------

    async def insert_collection(
        self, *, tenant_id: str, name: str, model: str, dims: int, size: int, overlap: float
    ) -> CollectionRow:
        try:
            row = await self.db.fetchrow_raw(
                "INSERT INTO rag_collections (id, tenant_id, name, embedding_model, dims, chunk_size, chunk_overlap) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id, name, embedding_model, dims, chunk_size, "
                "chunk_overlap, document_count, chunk_count, created_at",
                new_id("col"),
                tenant_id,
                name,
                model,
                dims,
                size,
                overlap,
            )
        except asyncpg.UniqueViolationError:
            raise Conflict(f"a collection named {name!r} already exists") from None
        return _collection(row)

    async def get_collection(self, *, tenant_id: str, collection_id: str) -> CollectionRow:
        row = await self.db.fetchrow_raw(f"{_COLLECTION} WHERE tenant_id = $1 AND id = $2", tenant_id, collection_id)
        if row is None:
            raise _missing_collection(collection_id)
        return _collection(row)

    async def list_collections(self, *, tenant_id: str, limit: int, cursor: str | None) -> Page[CollectionRow]:
        after = decode_cursor(cursor)
        async with self.db.connection() as conn:
            rows = await conn.raw_connection.fetch(
                f"{_COLLECTION} WHERE tenant_id = $1 AND ($2::text IS NULL OR id > $2) ORDER BY id LIMIT $3",
                tenant_id,
                after,
                limit + 1,
            )
        items = [_collection(r) for r in rows[:limit]]
        return Page(items, encode_cursor(items[-1].id) if len(rows) > limit else None)

    async def delete_collection(self, *, tenant_id: str, collection_id: str) -> None:
        found = await self.db.fetchrow_raw(
            "DELETE FROM rag_collections WHERE tenant_id = $1 AND id = $2 RETURNING id", tenant_id, collection_id
        )
        if found is None:
            raise _missing_collection(collection_id)

    # ---- documents -----------------------------------------------------------------------------------------

    async def replace_documents(self, *, tenant_id: str, collection_id: str, documents: Sequence[NewDocument]) -> int:
        """Insert `documents`, replacing any with the same ids, in one transaction; the number of chunks written."""
        ids = [d.id for d in documents]
        chunks = [c for d in documents for c in d.chunks]
        async with self._transaction() as raw:
            coll = await raw.fetchrow(
                "SELECT dims, chunk_count, total_length, weighted_avgdl FROM rag_collections "
                "WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
                tenant_id,
                collection_id,
            )
            if coll is None:
                raise _missing_collection(collection_id)
            removed = await self._remove(raw, collection_id, ids)
            tokens = await self._tokenize(raw, [c.text for c in chunks])
            added_length = sum(sum(tfs) for _, tfs in tokens)
            count = coll["chunk_count"] - removed[1] + len(chunks)
            total = coll["total_length"] - removed[2] + added_length
            avgdl = total / count if count else 0.0
            weighted = float(coll["weighted_avgdl"])
            reweight = weighted <= 0 or abs(avgdl - weighted) > bm25.REWEIGHT_DRIFT * weighted
            use = avgdl if reweight else weighted
            await raw.executemany(
                "INSERT INTO rag_documents (collection_id, id, tenant_id, metadata, chunk_count, length) "
                "VALUES ($1, $2, $3, $4::text::jsonb, $5, $6)",
                [(collection_id, d.id, tenant_id, ascii_json(d.metadata), len(d.chunks), d.length) for d in documents],
            )
            # Formatting thousands of vectors as text takes seconds of CPU: off the event loop past a few hundred.
            build = partial(_chunk_rows, tenant_id, collection_id, chunks, tokens, use)
            rows = await asyncio.to_thread(build) if len(chunks) > OFF_LOOP_CHUNKS else build()
            await raw.executemany(
                "INSERT INTO rag_chunks (tenant_id, collection_id, document_id, seq, text, metadata, page, heading, "
                "start_char, end_char, length, terms, tfs, bm25, dims, embedding) VALUES ($1, $2, $3, $4, $5, "
                "$6::text::jsonb, $7, $8, $9, $10, $11, $12, $13, $14::text::sparsevec, $15, $16::text::vector)",
                rows,
            )
            df = Counter(t for terms, _ in tokens for t in terms)
            if df:
                pairs = sorted(df.items())
                await raw.execute(
                    "INSERT INTO rag_terms (collection_id, term, df) "
                    "SELECT $1, t, n FROM unnest($2::int[], $3::int[]) AS u(t, n) ORDER BY t "
                    "ON CONFLICT (collection_id, term) DO UPDATE SET df = rag_terms.df + EXCLUDED.df",
                    collection_id,
                    [t for t, _ in pairs],
                    [n for _, n in pairs],
                )
            if reweight and coll["chunk_count"] - removed[1] > 0:
                await raw.execute(bm25.REWEIGHT_SQL, collection_id, use)
            await raw.execute(
                "UPDATE rag_collections SET document_count = document_count - $2 + $3, chunk_count = $4, "
                "total_length = $5, weighted_avgdl = $6 WHERE id = $1",
                collection_id,
                removed[0],
                len(documents),
                count,
                total,
                use,
            )
        return len(chunks)

    async def _tokenize(self, raw: Any, texts: list[str]) -> list[tuple[list[int], list[int]]]:
        if not texts:
            return []
        rows = await raw.fetch(
            "SELECT d.i, array_agg(x.term ORDER BY x.term) AS terms, array_agg(x.tf ORDER BY x.term) AS tfs "
            f"FROM unnest($1::text[]) WITH ORDINALITY AS d(text, i), LATERAL ({bm25.tokenize_sql('d.text')}) AS x "
            "GROUP BY d.i",
            texts,
        )
        found = {r["i"]: (list(r["terms"]), list(r["tfs"])) for r in rows}
        return [found.get(i + 1, ([], [])) for i in range(len(texts))]

    async def _remove(self, raw: Any, collection_id: str, ids: list[str]) -> tuple[int, int, int]:
        """Delete these documents (and their chunks, and their share of the term counts): how many documents,
        chunks and tokens went."""
        stats = await raw.fetchrow(
            "SELECT count(*) AS n, coalesce(sum(length), 0) AS total FROM rag_chunks "
            "WHERE collection_id = $1 AND document_id = ANY($2::text[])",
            collection_id,
            ids,
        )
        if stats["n"]:
            await raw.execute(
                "UPDATE rag_terms t SET df = t.df - x.n FROM (SELECT term, count(*)::int AS n FROM rag_chunks c, "
                "unnest(c.terms) AS term WHERE c.collection_id = $1 AND c.document_id = ANY($2::text[]) "
                "GROUP BY term) AS x WHERE t.collection_id = $1 AND t.term = x.term",
                collection_id,
                ids,
            )
        deleted = await raw.fetch(
            "DELETE FROM rag_documents WHERE collection_id = $1 AND id = ANY($2::text[]) RETURNING id",
            collection_id,
            ids,
        )
        return len(deleted), int(stats["n"]), int(stats["total"])

    async def delete_document(self, *, tenant_id: str, collection_id: str, document_id: str) -> None:
        async with self._transaction() as raw:
            coll = await raw.fetchrow(
                "SELECT id FROM rag_collections WHERE tenant_id = $1 AND id = $2 FOR UPDATE", tenant_id, collection_id
            )
            if coll is None:
                raise _missing_collection(collection_id)
            docs, chunks, length = await self._remove(raw, collection_id, [document_id])
            if not docs:
                raise NotFound(f"document {document_id!r} does not exist in collection {collection_id!r}")
            await raw.execute(
                "UPDATE rag_collections SET document_count = document_count - 1, chunk_count = chunk_count - $2, "
                "total_length = total_length - $3 WHERE id = $1",
                collection_id,
                chunks,
                length,
            )

    async def list_documents(
        self, *, tenant_id: str, collection_id: str, limit: int, cursor: str | None
    ) -> Page[DocumentRow]:
        await self.get_collection(tenant_id=tenant_id, collection_id=collection_id)
        after = decode_cursor(cursor)
        async with self.db.connection() as conn:
            rows = await conn.raw_connection.fetch(
                "SELECT id, metadata::text AS metadata, chunk_count, length, created_at, updated_at "
                "FROM rag_documents WHERE collection_id = $1 AND tenant_id = $2 AND ($3::text IS NULL OR id > $3) "
                "ORDER BY id LIMIT $4",
                collection_id,
                tenant_id,
                after,
                limit + 1,
            )
        items = [_document(r) for r in rows[:limit]]
        return Page(items, encode_cursor(items[-1].id) if len(rows) > limit else None)

    async def get_document(
        self, *, tenant_id: str, collection_id: str, document_id: str
    ) -> tuple[DocumentRow, list[ChunkRow]]:
        await self.get_collection(tenant_id=tenant_id, collection_id=collection_id)
        async with self._transaction(isolation="repeatable_read", readonly=True) as raw:
            row = await raw.fetchrow(
                "SELECT id, metadata::text AS metadata, chunk_count, length, created_at, updated_at "
                "FROM rag_documents WHERE collection_id = $1 AND tenant_id = $2 AND id = $3",
                collection_id,
                tenant_id,
                document_id,
            )
            if row is None:
                raise NotFound(f"document {document_id!r} does not exist in collection {collection_id!r}")
            chunks = await raw.fetch(
                "SELECT id, document_id, seq, text, metadata::text AS metadata, page, heading, start_char, end_char, "
                "0.0 AS score FROM rag_chunks WHERE collection_id = $1 AND tenant_id = $2 AND document_id = $3 "
                "ORDER BY seq",
                collection_id,
                tenant_id,
                document_id,
            )
        return _document(row), [_chunk(c) for c in chunks]

    # ---- search --------------------------------------------------------------------------------------------

    async def search(self, s: Search) -> list[ChunkRow]:
        sql, params = search_sql(s)
        async with self._transaction(readonly=True) as raw:
            if s.mode != "keyword" and not s.exact:
                await raw.execute(
                    f"SET LOCAL hnsw.iterative_scan = relaxed_order; SET LOCAL hnsw.ef_search = {int(s.ef_search)}"
                )
            rows = await raw.fetch(sql, *params)
        return [_chunk(r) for r in rows]


def search_sql(s: Search) -> tuple[str, list[Any]]:
    """The one statement of a search and its parameters (filters are parameters, never SQL text)."""
    params: list[Any] = [s.tenant_id, s.collection.id]
    where = "c.tenant_id = $1 AND c.collection_id = $2"
    for alternatives in s.filters:
        # One cheap operator per condition (no subplan per row): the chunk's metadata holds one of the objects.
        params.append([ascii_json(a) for a in alternatives])
        where += f" AND c.metadata @> ANY(${len(params)}::text[]::jsonb[])"
    # Hybrid fuses deeper candidate lists than it returns: 100 rather than 50 gained 0.001-0.002 nDCG@10 on both sets.
    depth = s.top_k if s.mode != "hybrid" else min(max(s.top_k * 10, 100), 1000)
    params.append(depth)
    n = f"${len(params)}"
    ctes: list[str] = []
    if s.mode in ("keyword", "hybrid"):
        params += [s.query, s.collection.chunk_count]
        q, total = f"${len(params) - 1}", f"${len(params)}"
        ctes.append(
            f"qt AS ({bm25.tokenize_sql(q)}), "
            f"idf AS (SELECT t.term, ln(1 + ({total}::float8 - t.df + 0.5) / (t.df + 0.5)) AS w FROM rag_terms t "
            "WHERE t.collection_id = $2 AND t.df > 0 AND t.term IN (SELECT term FROM qt)), "
            f"qv AS (SELECT format('{{%s}}/{bm25.SPACE}', coalesce(string_agg(term || ':' || w, ',' "
            "ORDER BY term), ''))::sparsevec AS v, array_agg(term) AS terms FROM idf), "
            f"kw AS (SELECT c.id, -(c.bm25 <#> qv.v) AS score, row_number() OVER (ORDER BY c.bm25 <#> qv.v, c.id) "
            f"AS r FROM rag_chunks c, qv WHERE {where} AND c.terms && qv.terms ORDER BY c.bm25 <#> qv.v, c.id "
            f"LIMIT {n})"
        )
    if s.mode in ("dense", "hybrid"):
        assert s.vector is not None
        params.append(vector_literal(s.vector))
        v = f"${len(params)}"
        if s.exact or s.collection.dims != INDEXED_DIMS:
            distance = f"c.embedding <=> {v}::text::vector"
            inner = f"SELECT c.id, {distance} AS dist FROM rag_chunks c WHERE {where} ORDER BY dist LIMIT {n}"
        else:
            distance = f"c.embedding::vector({INDEXED_DIMS}) <=> {v}::text::vector({INDEXED_DIMS})"
            inner = (
                f"SELECT c.id, {distance} AS dist FROM rag_chunks c WHERE c.dims = {INDEXED_DIMS} AND {where} "
                f"ORDER BY {distance} LIMIT {n}"
            )
        ctes.append(
            f"dn0 AS MATERIALIZED ({inner}), "
            "dn AS (SELECT id, dist, row_number() OVER (ORDER BY dist, id) AS r FROM dn0)"
        )
    if s.mode == "keyword":
        ranked = "SELECT id, score FROM kw"
    elif s.mode == "dense":
        ranked = "SELECT id, 1 - dist AS score FROM dn"
    elif s.fusion == "rrf":
        params += [s.keyword_weight, s.dense_weight, s.rrf_k]
        wk, wd, k = (f"${len(params) - 2}", f"${len(params) - 1}", f"${len(params)}")
        ranked = (
            f"SELECT coalesce(kw.id, dn.id) AS id, coalesce({wk}::float8 / ({k} + kw.r), 0) + "
            f"coalesce({wd}::float8 / ({k} + dn.r), 0) AS score FROM kw FULL JOIN dn ON kw.id = dn.id"
        )
    else:
        # Relative score fusion: each ranking's scores scaled to 0..1 over its own candidates (the best 1, the last
        # 0; all 1 when they tie), weighted and added. It keeps how far apart the candidates are, which ranks throw
        # away: over RRF (k 60) it gained 0.025 nDCG@10 on the docstring set of benchmarks/rag_bench.py and 0.016 on
        # the man pages.
        params += [s.keyword_weight, s.dense_weight]
        wk, wd = f"${len(params) - 1}", f"${len(params)}"
        ctes.append(
            "kwn AS (SELECT id, coalesce((score - min(score) OVER ()) / "
            "nullif(max(score) OVER () - min(score) OVER (), 0), 1) AS s FROM kw), "
            "dnn AS (SELECT id, coalesce((max(dist) OVER () - dist) / "
            "nullif(max(dist) OVER () - min(dist) OVER (), 0), 1) AS s FROM dn)"
        )
        ranked = (
            f"SELECT coalesce(kwn.id, dnn.id) AS id, coalesce({wk}::float8 * kwn.s, 0) + "
            f"coalesce({wd}::float8 * dnn.s, 0) AS score FROM kwn FULL JOIN dnn ON kwn.id = dnn.id"
        )
    params.append(s.top_k)
    sql = (
        f"WITH {', '.join(ctes)}, ranked AS ({ranked}) "
        "SELECT c.id, c.document_id, c.seq, c.text, c.metadata::text AS metadata, c.page, c.heading, "
        "c.start_char, c.end_char, ranked.score FROM ranked JOIN rag_chunks c ON c.id = ranked.id "
        f"ORDER BY ranked.score DESC, c.id LIMIT ${len(params)}"
    )
    return sql, params
