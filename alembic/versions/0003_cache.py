"""Cache: key/value entries with per-namespace generations, hit/miss counters, and semantic vectors.

Revision ID: 0003_cache
Revises: 0001_foundation

Entries and semantic rows are UNLOGGED: they are a cache (rebuilt by the next miss), so they skip the
write-ahead log for faster writes and are emptied by a database crash recovery, which is harmless here.
Counters are logged: they are the tenant's statistics.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003_cache"
down_revision: str | Sequence[str] | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = ("cache",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.execute(
        """
        CREATE UNLOGGED TABLE cache_entries (
            tenant_id   text NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
            namespace   text NOT NULL,
            key         text NOT NULL,
            generation  bigint NOT NULL,
            value       bytea NOT NULL,
            expires_at  timestamptz NOT NULL,
            CONSTRAINT pk_cache_entries PRIMARY KEY (tenant_id, namespace, key)
        )
        """
    )
    op.execute("CREATE INDEX ix_cache_entries_expires_at ON cache_entries (expires_at)")
    op.execute(
        """
        CREATE TABLE cache_namespaces (
            tenant_id   text NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
            namespace   text NOT NULL,
            generation  bigint NOT NULL,
            CONSTRAINT pk_cache_namespaces PRIMARY KEY (tenant_id, namespace)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE cache_counters (
            tenant_id   text NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
            name        text NOT NULL,
            value       bigint NOT NULL DEFAULT 0,
            CONSTRAINT pk_cache_counters PRIMARY KEY (tenant_id, name)
        )
        """
    )
    op.execute(
        """
        CREATE UNLOGGED TABLE cache_semantic (
            tenant_id   text NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
            exact_key   text NOT NULL,
            match_key   text NOT NULL,
            model       text NOT NULL,
            prompt      text NOT NULL,
            embedding   vector(384) NOT NULL,
            response    bytea NOT NULL,
            expires_at  timestamptz NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_cache_semantic PRIMARY KEY (tenant_id, exact_key)
        )
        """
    )
    op.execute("CREATE INDEX ix_cache_semantic_match ON cache_semantic (tenant_id, match_key, expires_at)")
    op.execute("CREATE INDEX ix_cache_semantic_expires_at ON cache_semantic (expires_at)")


def downgrade() -> None:
    op.execute("DROP TABLE cache_semantic")
    op.execute("DROP TABLE cache_counters")
    op.execute("DROP TABLE cache_namespaces")
    op.execute("DROP TABLE cache_entries")
