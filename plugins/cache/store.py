"""SQL for the semantic LLM-response cache (`cache_semantic`): vectors stay in PostgreSQL whatever the backend.

A lookup is an exact cosine scan over one tenant's rows for one match key (same model, system prompt and
parameters), which the (tenant_id, match_key, expires_at) index narrows to a handful of rows; an approximate
index would lose recall under that filter and buys nothing at this size.
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


class CacheStore:
    def __init__(self, db: Database) -> None:
        self.db = db

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
        rows = await self.db.fetch_all(
            "SELECT prompt, response, 1 - (embedding <=> CAST(:v AS vector)) AS similarity FROM cache_semantic "
            "WHERE tenant_id = :t AND match_key = :mk AND expires_at > clock_timestamp() "
            "AND 1 - (embedding <=> CAST(:v AS vector)) >= :threshold "
            "ORDER BY embedding <=> CAST(:v AS vector) LIMIT :limit",
            {"t": tenant_id, "mk": match_key, "v": vector_literal(embedding), "threshold": threshold, "limit": limit},
        )
        return [
            SemanticCandidate(prompt=r["prompt"], response=bytes(r["response"]), similarity=float(r["similarity"]))
            for r in rows
        ]

    async def sweep_semantic(self, *, batch: int = 5000) -> int:
        rows = await self.db.fetch_all(
            "DELETE FROM cache_semantic WHERE ctid IN (SELECT ctid FROM cache_semantic "
            "WHERE expires_at <= clock_timestamp() LIMIT :batch FOR UPDATE SKIP LOCKED) RETURNING 1",
            {"batch": batch},
        )
        return len(rows)
