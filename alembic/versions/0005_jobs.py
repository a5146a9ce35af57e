"""Jobs: procrastinate's queue schema, and the platform's own job and step tables.

Revision ID: 0005_jobs
Revises: 0001_foundation

procrastinate's schema is the one the installed (pinned) procrastinate ships, applied from the package, and the
version it came from is recorded in `jobs_queue_schema`. Moving the pin later is a new revision that applies, from
the newer package, procrastinate's own migration scripts between the recorded version and the installed one: an old
database gets the deltas, a new one (created at the newer version here) none, so both end the same.

`jobs` is what a tenant sees (public id, kind, status, stage, progress, result or error); `procrastinate_jobs` is
the queue that hands a job to a worker. One statement inserts both, so neither exists without the other.
`lease` is written when a worker starts the job; every later write of that run names it, so a worker that lost the
job (declared dead, the job handed to another) can no longer change it. `job_steps` records each finished step of a
job with its JSON result: a retry returns the recorded result instead of running the step again.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import metadata, resources

from alembic import op

revision: str = "0005_jobs"
down_revision: str | Sequence[str] | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = ("jobs",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    schema = (resources.files("procrastinate.sql") / "schema.sql").read_text(encoding="utf-8")
    if "$faas_schema$" in schema:
        raise RuntimeError("the procrastinate schema contains the dollar-quote tag used to apply it")
    # The schema is many statements (functions with $$ bodies among them); the asyncpg driver prepares what it
    # sends, which allows one statement only, so it runs as one EXECUTE inside a DO block, in this transaction.
    op.execute(f"DO $faas_do$ BEGIN EXECUTE $faas_schema${schema}$faas_schema$; END $faas_do$")
    op.execute("CREATE TABLE jobs_queue_schema (procrastinate_version text NOT NULL)")
    version = metadata.version("procrastinate")
    if not all(part.isdigit() for part in version.split(".")):
        raise RuntimeError(f"unexpected procrastinate version {version!r}")
    op.execute(f"INSERT INTO jobs_queue_schema (procrastinate_version) VALUES ('{version}')")
    op.execute(
        """
        CREATE TABLE jobs (
            id                text PRIMARY KEY,
            tenant_id         text NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
            kind              text NOT NULL,
            status            text NOT NULL DEFAULT 'queued',
            stage             text,
            progress          smallint NOT NULL DEFAULT 0,
            payload           jsonb NOT NULL DEFAULT '{}'::jsonb,
            result            jsonb,
            error             text,
            attempts          integer NOT NULL DEFAULT 0,
            cancel_requested  boolean NOT NULL DEFAULT false,
            lease             text,
            procrastinate_id  bigint REFERENCES procrastinate_jobs(id) ON DELETE SET NULL,
            created_at        timestamptz NOT NULL DEFAULT now(),
            started_at        timestamptz,
            finished_at       timestamptz,
            updated_at        timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT ck_jobs_status CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
            CONSTRAINT ck_jobs_progress CHECK (progress BETWEEN 0 AND 100),
            CONSTRAINT uq_jobs_procrastinate_id UNIQUE (procrastinate_id)
        )
        """
    )
    # Public ids start with the creation time, so (tenant_id, id) is also the newest-first listing order.
    op.execute("CREATE INDEX ix_jobs_tenant_id ON jobs (tenant_id, id)")
    op.execute(
        """
        CREATE TABLE job_steps (
            job_id      text NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
            tenant_id   text NOT NULL,
            name        text NOT NULL,
            result      jsonb NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_job_steps PRIMARY KEY (job_id, name)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE jobs_queue_schema")
    op.execute("DROP TABLE job_steps")
    op.execute("DROP TABLE jobs")
    # CASCADE reaches only procrastinate's own objects (its triggers, and functions returning its row type).
    op.execute(
        "DROP TABLE procrastinate_events, procrastinate_periodic_defers, procrastinate_jobs, procrastinate_workers "
        "CASCADE"
    )
    op.execute(
        """
        DO $$
        DECLARE f record;
        BEGIN
            FOR f IN SELECT p.oid::regprocedure AS sig FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                     WHERE n.nspname = current_schema() AND p.proname LIKE 'procrastinate\\_%'
            LOOP
                EXECUTE 'DROP FUNCTION ' || f.sig;
            END LOOP;
        END $$
        """
    )
    op.execute("DROP TYPE procrastinate_job_to_defer_v1, procrastinate_job_event_type, procrastinate_job_status")
