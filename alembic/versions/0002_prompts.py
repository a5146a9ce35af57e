"""Prompts: templates with immutable versions and movable labels.

Revision ID: 0002_prompts
Revises: 0001_foundation

A trigger refuses every UPDATE of a version row, so immutability holds even for SQL that bypasses the store.
A version's template, variables, config and commit message are stored as ASCII-escaped JSON text: client text
may hold lone surrogates (legal JSON escapes), which neither UTF-8 text nor jsonb accepts.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002_prompts"
down_revision: str | Sequence[str] | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = ("prompts",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE prompts_prompts (
            id              text PRIMARY KEY,
            tenant_id       text NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
            name            text NOT NULL,
            type            text NOT NULL,
            syntax          text NOT NULL,
            latest_version  integer NOT NULL DEFAULT 0,
            created_at      timestamptz NOT NULL DEFAULT now(),
            updated_at      timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT uq_prompts_prompts_tenant_id UNIQUE (tenant_id, name),
            CONSTRAINT ck_prompts_prompts_type CHECK (type IN ('text', 'chat')),
            CONSTRAINT ck_prompts_prompts_syntax CHECK (syntax IN ('simple', 'jinja2'))
        )
        """
    )
    op.execute(
        """
        CREATE TABLE prompts_versions (
            prompt_id       text NOT NULL REFERENCES prompts_prompts(id) ON DELETE CASCADE,
            tenant_id       text NOT NULL,
            version         integer NOT NULL,
            template        text NOT NULL,
            variables       text NOT NULL,
            config          text,
            commit_message  text NOT NULL,
            created_at      timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_prompts_versions PRIMARY KEY (prompt_id, version),
            CONSTRAINT ck_prompts_versions_version CHECK (version >= 1)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE prompts_labels (
            prompt_id   text NOT NULL,
            tenant_id   text NOT NULL,
            label       text NOT NULL,
            version     integer NOT NULL,
            updated_at  timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_prompts_labels PRIMARY KEY (prompt_id, label),
            CONSTRAINT fk_prompts_labels_version FOREIGN KEY (prompt_id, version)
                REFERENCES prompts_versions (prompt_id, version) ON DELETE CASCADE
        )
        """
    )
    op.execute(
        """
        CREATE FUNCTION prompts_versions_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'prompt versions are immutable: create a new version instead'
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER prompts_versions_no_update BEFORE UPDATE ON prompts_versions "
        "FOR EACH ROW EXECUTE FUNCTION prompts_versions_immutable()"
    )


def downgrade() -> None:
    op.execute("DROP TABLE prompts_labels")
    op.execute("DROP TABLE prompts_versions")
    op.execute("DROP FUNCTION prompts_versions_immutable()")
    op.execute("DROP TABLE prompts_prompts")
