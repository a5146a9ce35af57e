"""Foundation: tenants and their API keys.

Revision ID: 0001_foundation
Revises:
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0001_foundation"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE tenants (
            id          text PRIMARY KEY,
            name        text NOT NULL,
            settings    jsonb NOT NULL DEFAULT '{}'::jsonb,
            created_at  timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT uq_tenants_name UNIQUE (name),
            CONSTRAINT ck_tenants_name CHECK (length(name) BETWEEN 1 AND 200)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE api_keys (
            id          text PRIMARY KEY,
            tenant_id   text NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
            name        text NOT NULL DEFAULT '',
            prefix      text NOT NULL,
            key_hash    bytea NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now(),
            revoked_at  timestamptz,
            CONSTRAINT uq_api_keys_key_hash UNIQUE (key_hash)
        )
        """
    )
    op.execute("CREATE INDEX ix_api_keys_tenant_id ON api_keys (tenant_id, created_at)")


def downgrade() -> None:
    op.execute("DROP TABLE api_keys")
    op.execute("DROP TABLE tenants")
