"""Ingestion: the sources of ingestion jobs (an uploaded file's bytes, or a URL and, once fetched, its bytes).

Revision ID: 0011_ingestion
Revises: 0005_jobs

One row per job (`job_id` unique): the upload is stored here, in the same transaction that queues the job, before
the 202, so a worker on any replica can process it and a crash loses nothing acknowledged; the bytes are released
once the document is stored. `sha256` is the content's hash (NULL for a URL until fetched): the same content sent
again to the same collection finds the job that has it (`ix_ingestion_sources_hash`). `source_key` names the
document (the file name or the URL): the same source with changed content replaces that document in the collection.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0011_ingestion"
down_revision: str | Sequence[str] | None = "0005_jobs"
branch_labels: str | Sequence[str] | None = ("ingestion",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE ingestion_sources (
            job_id          text PRIMARY KEY,
            tenant_id       text NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
            collection_id   text NOT NULL,
            kind            text NOT NULL,
            filename        text,
            url             text,
            source_key      text NOT NULL,
            document_id     text NOT NULL,
            content_type    text,
            sha256          text,
            size            bigint,
            content         bytea,
            created_at      timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT ck_ingestion_sources_kind CHECK (kind IN ('upload', 'url')),
            CONSTRAINT ck_ingestion_sources_source CHECK ((kind = 'upload') = (filename IS NOT NULL))
        )
        """
    )
    # Public job ids start with the creation time: (tenant_id, job_id) is also the newest-first listing order.
    op.execute("CREATE INDEX ix_ingestion_sources_tenant ON ingestion_sources (tenant_id, job_id)")
    op.execute("CREATE INDEX ix_ingestion_sources_hash ON ingestion_sources (tenant_id, collection_id, sha256)")


def downgrade() -> None:
    op.execute("DROP TABLE ingestion_sources")
