"""SQL for the semantic LLM-response cache (`cache_semantic`): vectors stay in PostgreSQL whatever the backend.

A lookup compares the request's embedding with one tenant's rows for one match key (same model, system prompt
and parameters). Where those are few (under `exact_max`, counted through the (tenant_id, match_key, expires_at)
index with a bounded scan), it is an exact cosine scan of them: an approximate index would lose recall under so
selective a filter. Where they are many (a chatbot with one system prompt puts all of a tenant's entries under
one key), it walks the HNSW index with pgvector's iterative scan in strict order, which keeps going past rows of
other tenants and keys until it has the nearest `limit` of this one; the similarity threshold is applied to those,
so a miss costs no more than a hit. `benchmarks/scale.py` measures both, and a test checks that the best match is
the exact scan's on a seeded set.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.db import Database

EMBEDDING_DIM = 384


@dataclass(frozen=True)
class SemanticCandidate:
    prompt: str
    response: bytes
    similarity: float


def vector_literal(vector: list[float]) -> str:
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


# Candidates up to which a lookup is an exact scan; past it, the HNSW index (see the module docstring).
EXACT_MAX = 2_000
# HNSW search breadth. Measured on 100k random unit vectors (no structure: the worst case; 90% one tenant's, one
# match key), the share of near-duplicates found at similarity 0.995 / 0.979 / 0.935 was 0.85 / 0.78 / 0.74 at 40
# (pgvector's default), 0.99 / 0.96 / 0.92 at 100, 1.0 / 0.995 / 1.0 at 200 and 1.0 at 400, which costs twice 200's
# time. A missed near-duplicate is a paid model call, so 200. (`benchmarks/semantic_recall.py` measures it.)
EF_SEARCH = 200

_NEAREST = """
SELECT prompt, response, similarity FROM (
    SELECT prompt, response, 1 - (embedding <=> CAST($3 AS vector)) AS similarity FROM cache_semantic
    WHERE tenant_id = $1 AND match_key = $2 AND expires_at > clock_timestamp()
    ORDER BY {distance} LIMIT $5
) AS nearest WHERE similarity >= $4
"""
# The exact scan orders by the distance plus nothing, which the HNSW index cannot serve, so the planner sorts the
# (few) candidates the btree index finds.
_EXACT = _NEAREST.replace("{distance}", "(embedding <=> CAST($3 AS vector)) + 0")
_APPROXIMATE = _NEAREST.replace("{distance}", "embedding <=> CAST($3 AS vector)")
_CANDIDATES = (
    "SELECT count(*) FROM (SELECT 1 FROM cache_semantic WHERE tenant_id = $1 AND match_key = $2 "
    "AND expires_at > clock_timestamp() LIMIT $3) AS c"
)


class CacheStore:
    def __init__(self, db: Database, *, exact_max: int = EXACT_MAX) -> None:
        self.db = db
        self.exact_max = exact_max

    async def insert_semantic(
        self,
        *,
        tenant_id: str,
        exact_key: str,
        match_key: str,
        model: str,
        prompt: str,
        embedding: list[float],
        response: bytes,
        ttl_seconds: int,
    ) -> None:
        await self.db.execute(
            "INSERT INTO cache_semantic (tenant_id, exact_key, match_key, model, prompt, embedding, response, "
            "expires_at) VALUES (:t, :ek, :mk, :model, :prompt, CAST(:v AS vector), :r, "
            "clock_timestamp() + make_interval(secs => :ttl)) "
            "ON CONFLICT (tenant_id, exact_key) DO UPDATE SET response = EXCLUDED.response, "
            "embedding = EXCLUDED.embedding, expires_at = EXCLUDED.expires_at, created_at = now()",
            {
                "t": tenant_id,
                "ek": exact_key,
                "mk": match_key,
                "model": model,
                "prompt": prompt,
                "v": vector_literal(embedding),
                "r": response,
                "ttl": float(ttl_seconds),
            },
        )

    async def list_nearest(
        self, *, tenant_id: str, match_key: str, embedding: list[float], threshold: float, limit: int = 5
    ) -> list[SemanticCandidate]:
        """Live rows of this tenant and match key whose cosine similarity is at least `threshold`, best first."""
        vector = vector_literal(embedding)
        async with self.db.connection() as conn:
            raw = conn.raw_connection
            few = await raw.fetchval(_CANDIDATES, tenant_id, match_key, self.exact_max) < self.exact_max
            if few:
                rows = await raw.fetch(_EXACT, tenant_id, match_key, vector, threshold, limit)
            else:
                async with raw.transaction():
                    await raw.execute(
                        "SELECT set_config('hnsw.iterative_scan', 'strict_order', true), "
                        f"set_config('hnsw.ef_search', '{EF_SEARCH}', true), "
                        # The planner would rather sort what the btree finds when its statistics say the key is
                        # rare; the candidates were just counted, and they are not.
                        "set_config('enable_sort', 'off', true)"
                    )
                    rows = await raw.fetch(_APPROXIMATE, tenant_id, match_key, vector, threshold, limit)
        found = [
            SemanticCandidate(prompt=r["prompt"], response=bytes(r["response"]), similarity=float(r["similarity"]))
            for r in rows
        ]
        return sorted(found, key=lambda c: -c.similarity)

    async def sweep_semantic(self, *, batch: int = 5000) -> int:
        rows = await self.db.fetch_all(
            "DELETE FROM cache_semantic WHERE ctid IN (SELECT ctid FROM cache_semantic "
            "WHERE expires_at <= clock_timestamp() LIMIT :batch FOR UPDATE SKIP LOCKED) RETURNING 1",
            {"batch": batch},
        )
        return len(rows)
