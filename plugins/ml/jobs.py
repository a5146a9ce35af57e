"""The `ml.train` job: train in one of the service's training processes (plugins/ml/trainers.py), register the
version.

Training and registering are one step of the job: a retried job (its worker died) first looks for the version it
wrote (versions carry their job's id) and returns it, so a retry never adds a second version. The training process
keeps scikit-learn off the serving process entirely (its interpreter, its memory, its import time); it is killed
when the job is cancelled or runs past FAAS_ML_TRAIN_TIMEOUT_SECONDS (as set when the job was queued), so neither
leaves work running behind.
"""

from __future__ import annotations

from typing import Any

from app.jobs import JobContext
from plugins.ml.interface import ML
from plugins.ml.service import DirectMlService
from plugins.ml.store import MlStore, NewVersion, VersionRow


def _result(name: str, row: VersionRow) -> dict[str, Any]:
    return {
        "model": name,
        "version": row.version,
        "sha256": row.sha256,
        "metrics": row.metrics,
        "train_seconds": row.train_seconds,
    }


async def train(ctx: JobContext) -> Any:
    payload = ctx.job.payload
    store = MlStore(ctx.db)
    tenant = ctx.job.tenant_id
    ml = ctx.services.get(ML)
    # A worker runs ml's jobs only where ml runs direct: the service here is the direct one, with its trainers.
    assert isinstance(ml, DirectMlService)
    trainers = ml.trainers

    async def register() -> dict[str, Any]:
        done = await store.get_version_by_job(tenant_id=tenant, job_id=ctx.job.id)
        if done is not None:
            return _result(*done)
        await ctx.progress("training", 10)
        meta, artifact = await trainers.run(
            payload, should_stop=lambda: ctx.cancelled, limit_seconds=float(payload["timeout_seconds"])
        )
        await ctx.progress("registering", 90)
        new = NewVersion(
            task=payload["task"],
            estimator=payload["estimator"],
            params=payload["params"],
            target=payload["target"],
            features=meta["features"],
            classes=meta["classes"],
            metrics=meta["metrics"],
            library_versions=meta["library_versions"],
            artifact=artifact,
            sha256=meta["sha256"],
            training_rows=meta["training_rows"],
            holdout_rows=meta["holdout_rows"],
            train_seconds=meta["train_seconds"],
        )
        await store.insert_version(tenant_id=tenant, name=payload["name"], job_id=ctx.job.id, new=new)
        found = await store.get_version_by_job(tenant_id=tenant, job_id=ctx.job.id)
        assert found is not None
        return _result(*found)

    return await ctx.step("register", register)
