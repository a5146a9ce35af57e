"""SQL for models (`ml_models`), their immutable versions (`ml_versions`) and aliases (`ml_aliases`).

Every query filters on the tenant. A version is inserted once, by its training job, and never changed (a trigger
refuses an UPDATE); it takes its number by incrementing the model's `latest_version` in the same transaction, so
concurrent trainings serialise on the model's row and never share a number. A version carries the job that made
it (unique), so a retried job finds the version it already wrote. Reads for serving leave the artifact out; it is
read only when a replica loads the version (`get_artifact`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from app.codec import ascii_json, loads
from app.db import Database
from app.errors import Conflict, NotFound
from app.pagination import Page, decode_cursor, encode_cursor
from app.tenancy import new_id
from plugins.ml.schemas import CHAMPION


@dataclass(frozen=True)
class ModelRow:
    id: str
    name: str
    task: str
    latest_version: int | None  # the newest version that exists
    aliases: dict[str, int]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class VersionRow:
    model_id: str
    version: int
    task: str
    estimator: str
    params: dict[str, Any]
    target: str | None
    features: list[dict[str, Any]]
    classes: list[Any] | None
    metrics: dict[str, float | None]
    library_versions: dict[str, str]
    sha256: str
    artifact_bytes: int
    training_rows: int
    holdout_rows: int
    train_seconds: float
    job_id: str | None
    created_at: datetime


@dataclass(frozen=True)
class NewVersion:
    task: str
    estimator: str
    params: dict[str, Any]
    target: str | None
    features: list[dict[str, Any]]
    classes: list[Any] | None
    metrics: dict[str, float | None]
    library_versions: dict[str, str]
    artifact: bytes
    sha256: str
    training_rows: int
    holdout_rows: int
    train_seconds: float


_MODEL = (
    "SELECT m.id, m.name, m.task, m.created_at, m.updated_at, "
    "(SELECT max(v.version) FROM ml_versions v WHERE v.model_id = m.id) AS newest, "
    "coalesce((SELECT jsonb_object_agg(a.alias, a.version) FROM ml_aliases a WHERE a.model_id = m.id), "
    "'{}'::jsonb) AS aliases FROM ml_models m"
)
_VERSION = (
    "SELECT model_id, version, task, estimator, params, target, features, classes, metrics, library_versions, "
    "sha256, artifact_bytes, training_rows, holdout_rows, train_seconds, job_id, created_at FROM ml_versions"
)


# The serving hot path: which version a request means, and whether it exists, in one statement.
_RESOLVE = """
WITH m AS (SELECT id FROM ml_models WHERE tenant_id = $1 AND name = $2),
pick AS (
    SELECT m.id, CASE
        WHEN $3::integer IS NOT NULL THEN $3::integer
        WHEN $4::text IS NOT NULL THEN (SELECT a.version FROM ml_aliases a WHERE a.model_id = m.id AND a.alias = $4)
        ELSE coalesce(
            (SELECT a.version FROM ml_aliases a WHERE a.model_id = m.id AND a.alias = $5),
            (SELECT max(v.version) FROM ml_versions v WHERE v.model_id = m.id))
    END AS version FROM m
)
SELECT pick.id, pick.version, EXISTS (
    SELECT 1 FROM ml_versions v WHERE v.model_id = pick.id AND v.version = pick.version
) AS found FROM pick
"""


def _model(row: Any) -> ModelRow:
    return ModelRow(
        id=row["id"],
        name=row["name"],
        task=row["task"],
        latest_version=row["newest"],
        aliases=loads(row["aliases"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _version(row: Any) -> VersionRow:
    return VersionRow(
        model_id=row["model_id"],
        version=row["version"],
        task=row["task"],
        estimator=row["estimator"],
        params=loads(row["params"]),
        target=None if row["target"] is None else loads(row["target"]),
        features=loads(row["features"]),
        classes=None if row["classes"] is None else loads(row["classes"]),
        metrics=loads(row["metrics"]),
        library_versions=loads(row["library_versions"]),
        sha256=row["sha256"],
        artifact_bytes=row["artifact_bytes"],
        training_rows=row["training_rows"],
        holdout_rows=row["holdout_rows"],
        train_seconds=row["train_seconds"],
        job_id=row["job_id"],
        created_at=row["created_at"],
    )


def missing_model(name: str) -> NotFound:
    return NotFound(f"model {name!r} does not exist")


class MlStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def find_model(self, *, tenant_id: str, name: str) -> ModelRow | None:
        row = await self.db.fetch_one(
            f"{_MODEL} WHERE m.tenant_id = :t AND m.name = :name", {"t": tenant_id, "name": name}
        )
        return None if row is None else _model(row)

    async def get_model(self, *, tenant_id: str, name: str) -> ModelRow:
        found = await self.find_model(tenant_id=tenant_id, name=name)
        if found is None:
            raise missing_model(name)
        return found

    async def list_models(self, *, tenant_id: str, limit: int, cursor: str | None) -> Page[ModelRow]:
        after = decode_cursor(cursor)
        rows = await self.db.fetch_all(
            f"{_MODEL} WHERE m.tenant_id = :t AND (CAST(:after AS text) IS NULL OR m.name > :after) "
            "ORDER BY m.name LIMIT :limit",
            {"t": tenant_id, "after": after, "limit": limit + 1},
        )
        items = [_model(r) for r in rows[:limit]]
        return Page(items, encode_cursor(items[-1].name) if len(rows) > limit else None)

    async def list_versions(self, *, tenant_id: str, model_id: str) -> list[VersionRow]:
        rows = await self.db.fetch_all(
            f"{_VERSION} WHERE tenant_id = :t AND model_id = :m ORDER BY version DESC",
            {"t": tenant_id, "m": model_id},
        )
        return [_version(r) for r in rows]

    async def get_version(self, *, tenant_id: str, model_id: str, version: int) -> VersionRow | None:
        row = await self.db.fetch_one(
            f"{_VERSION} WHERE tenant_id = :t AND model_id = :m AND version = :v",
            {"t": tenant_id, "m": model_id, "v": version},
        )
        return None if row is None else _version(row)

    async def get_version_by_job(self, *, tenant_id: str, job_id: str) -> tuple[str, VersionRow] | None:
        """(model name, version) that the job `job_id` wrote, if it wrote one."""
        row = await self.db.fetch_one(
            f"SELECT m.name AS model_name, v.* FROM ({_VERSION} WHERE tenant_id = :t AND job_id = :j) v "
            "JOIN ml_models m ON m.id = v.model_id",
            {"t": tenant_id, "j": job_id},
        )
        return None if row is None else (row["model_name"], _version(row))

    async def resolve(self, *, tenant_id: str, name: str, version: int | None, alias: str | None) -> tuple[str, int]:
        """(model id, version) a request means, in one round trip: `version`, else `alias`'s, else `champion`'s,
        else the newest. NotFound naming what is missing."""
        row = await self.db.fetchrow_raw(_RESOLVE, tenant_id, name, version, alias, CHAMPION)
        if row is None:
            raise missing_model(name)
        if row["version"] is None:
            if alias is not None:
                raise NotFound(f"model {name!r} has no alias {alias!r}")
            raise NotFound(f"model {name!r} has no version yet: its training has not finished")
        if not row["found"]:
            raise NotFound(f"model {name!r} has no version {row['version']}")
        return str(row["id"]), int(row["version"])

    async def get_artifact(self, *, tenant_id: str, model_id: str, version: int) -> bytes | None:
        value = await self.db.fetch_val(
            "SELECT artifact FROM ml_versions WHERE tenant_id = :t AND model_id = :m AND version = :v",
            {"t": tenant_id, "m": model_id, "v": version},
        )
        return None if value is None else bytes(value)

    async def insert_version(self, *, tenant_id: str, name: str, job_id: str | None, new: NewVersion) -> int:
        """Create the model if needed and append the next version (one transaction); Conflict when the model
        exists with another task."""
        async with self.db.transaction():
            await self.db.execute(
                "INSERT INTO ml_models (id, tenant_id, name, task) VALUES (:id, :t, :name, :task) "
                "ON CONFLICT (tenant_id, name) DO NOTHING",
                {"id": new_id("mdl"), "t": tenant_id, "name": name, "task": new.task},
            )
            row = await self.db.fetch_one(
                "UPDATE ml_models SET latest_version = latest_version + 1, updated_at = now() "
                "WHERE tenant_id = :t AND name = :name RETURNING id, task, latest_version",
                {"t": tenant_id, "name": name},
            )
            assert row is not None  # inserted above, or there already (in this transaction's snapshot)
            if row["task"] != new.task:
                raise Conflict(f"model {name!r} does {row['task']}: train a {new.task} model under another name")
            await self.db.execute(
                "INSERT INTO ml_versions (model_id, tenant_id, version, task, estimator, params, target, features, "
                "classes, metrics, library_versions, artifact, sha256, artifact_bytes, training_rows, holdout_rows, "
                "train_seconds, job_id) VALUES (:m, :t, :v, :task, :est, :params, :target, :features, :classes, "
                ":metrics, :libs, :artifact, :sha, :size, :train_rows, :holdout_rows, :seconds, :job)",
                {
                    "m": row["id"],
                    "t": tenant_id,
                    "v": row["latest_version"],
                    "task": new.task,
                    "est": new.estimator,
                    "params": ascii_json(new.params),
                    "target": None if new.target is None else ascii_json(new.target),
                    "features": ascii_json(new.features),
                    "classes": None if new.classes is None else ascii_json(new.classes),
                    "metrics": ascii_json(new.metrics),
                    "libs": ascii_json(new.library_versions),
                    "artifact": new.artifact,
                    "sha": new.sha256,
                    "size": len(new.artifact),
                    "train_rows": new.training_rows,
                    "holdout_rows": new.holdout_rows,
                    "seconds": new.train_seconds,
                    "job": job_id,
                },
            )
            return int(row["latest_version"])

    async def set_alias(self, *, tenant_id: str, model_id: str, alias: str, version: int) -> bool:
        """Point `alias` at `version`; False when the model has no such version."""
        try:
            await self.db.execute(
                "INSERT INTO ml_aliases (model_id, tenant_id, alias, version) VALUES (:m, :t, :a, :v) "
                "ON CONFLICT (model_id, alias) DO UPDATE SET version = EXCLUDED.version, updated_at = now()",
                {"m": model_id, "t": tenant_id, "a": alias, "v": version},
            )
        except asyncpg.ForeignKeyViolationError:
            return False
        return True

    async def delete_version(self, *, tenant_id: str, model_id: str, version: int) -> bool:
        found = await self.db.fetch_val(
            "DELETE FROM ml_versions WHERE tenant_id = :t AND model_id = :m AND version = :v RETURNING version",
            {"t": tenant_id, "m": model_id, "v": version},
        )
        return found is not None

    async def delete_model(self, *, tenant_id: str, name: str) -> str:
        """Delete the model with its versions and aliases; its id (for the caller's cache)."""
        found = await self.db.fetch_val(
            "DELETE FROM ml_models WHERE tenant_id = :t AND name = :name RETURNING id",
            {"t": tenant_id, "name": name},
        )
        if found is None:
            raise missing_model(name)
        return str(found)
