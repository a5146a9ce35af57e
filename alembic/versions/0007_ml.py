"""ML: models, their immutable versions (ONNX artifacts with their SHA-256) and movable aliases.

Revision ID: 0007_ml
Revises: 0005_jobs

A version is written once, by the training job that produced it (`job_id` is unique, so a retried job finds its
version instead of adding a second), and a trigger refuses every UPDATE of one. The artifact is the ONNX file as
bytes, next to the SHA-256 recorded when it was trained: serving recomputes it and refuses a mismatch. Metadata
that holds client text (feature names, categories, classes, parameters) is stored as ASCII-escaped JSON text.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007_ml"
down_revision: str | Sequence[str] | None = "0005_jobs"
branch_labels: str | Sequence[str] | None = ("ml",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE ml_models (
            id              text PRIMARY KEY,
            tenant_id       text NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
            name            text NOT NULL,
            task            text NOT NULL,
            latest_version  integer NOT NULL DEFAULT 0,
            created_at      timestamptz NOT NULL DEFAULT now(),
            updated_at      timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT uq_ml_models_tenant_id UNIQUE (tenant_id, name),
            CONSTRAINT ck_ml_models_task CHECK (task IN ('classification', 'regression', 'anomaly'))
        )
        """
    )
    op.execute(
        """
        CREATE TABLE ml_versions (
            model_id          text NOT NULL REFERENCES ml_models(id) ON DELETE CASCADE,
            tenant_id         text NOT NULL,
            version           integer NOT NULL,
            task              text NOT NULL,
            estimator         text NOT NULL,
            params            text NOT NULL,
            target            text,
            features          text NOT NULL,
            classes           text,
            metrics           text NOT NULL,
            library_versions  text NOT NULL,
            artifact          bytea NOT NULL,
            sha256            text NOT NULL,
            artifact_bytes    integer NOT NULL,
            training_rows     integer NOT NULL,
            holdout_rows      integer NOT NULL,
            train_seconds     double precision NOT NULL,
            job_id            text,
            created_at        timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_ml_versions PRIMARY KEY (model_id, version),
            CONSTRAINT uq_ml_versions_job_id UNIQUE (job_id),
            CONSTRAINT ck_ml_versions_version CHECK (version >= 1)
        )
        """
    )
    op.execute("CREATE INDEX ix_ml_versions_tenant_id ON ml_versions (tenant_id)")
    op.execute(
        """
        CREATE TABLE ml_aliases (
            model_id    text NOT NULL,
            tenant_id   text NOT NULL,
            alias       text NOT NULL,
            version     integer NOT NULL,
            updated_at  timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_ml_aliases PRIMARY KEY (model_id, alias),
            CONSTRAINT fk_ml_aliases_version FOREIGN KEY (model_id, version)
                REFERENCES ml_versions (model_id, version) ON DELETE CASCADE
        )
        """
    )
    op.execute(
        """
        CREATE FUNCTION ml_versions_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'model versions are immutable: train a new version instead'
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER ml_versions_no_update BEFORE UPDATE ON ml_versions "
        "FOR EACH ROW EXECUTE FUNCTION ml_versions_immutable()"
    )


def downgrade() -> None:
    op.execute("DROP TABLE ml_aliases")
    op.execute("DROP TABLE ml_versions")
    op.execute("DROP FUNCTION ml_versions_immutable()")
    op.execute("DROP TABLE ml_models")
