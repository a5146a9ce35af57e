"""Cache: an HNSW index for semantic lookups over many entries of one tenant and match key.

A chatbot with one model and one system prompt puts every entry of a tenant under one match key, so the
(tenant_id, match_key) index narrows nothing and an exact scan grows with the entries (62 ms at 100k). Lookups over
more than a few thousand candidates walk this index instead (`CacheStore.list_nearest`).

Revision ID: 0009_cache_semantic_hnsw
Revises: 0003_cache
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009_cache_semantic_hnsw"
down_revision: str | Sequence[str] | None = "0003_cache"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE INDEX ix_cache_semantic_hnsw ON cache_semantic USING hnsw (embedding vector_cosine_ops)")


def downgrade() -> None:
    op.execute("DROP INDEX ix_cache_semantic_hnsw")
