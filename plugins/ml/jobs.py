"""The `ml.train` job: train the pipeline in a worker thread, convert it to ONNX, register the version.

Training and registering are one step of the job: a retried job (its worker died) first looks for the version it
wrote (versions carry their job's id) and returns it, so a retry never adds a second version. Training is CPU-bound
and cannot be interrupted: the thread runs to its end, and a cancellation requested meanwhile stops the job before
anything is registered. scikit-learn and skl2onnx are imported here, inside the handler, on the first training.
"""

from __future__ import annotations

import asyncio
from typing import Any

from app.jobs import JobContext
from plugins.ml.data import Dataset
from plugins.ml.store import MlStore, NewVersion, VersionRow


def _result(name: str, row: VersionRow) -> dict[str, Any]:
    return {
        "model": name,
        "version": row.version,
        "sha256": row.sha256,
        "metrics": row.metrics,
        "train_seconds": row.train_seconds,
    }


def _train(payload: dict[str, Any]) -> NewVersion:
    from plugins.ml import training  # scikit-learn and skl2onnx: seconds to import, so only where a job trains

    trained = training.train(
        Dataset.decode(payload["data"]),
        task=payload["task"],
        estimator=payload["estimator"],
        params=payload["params"],
        test_size=payload["test_size"],
    )
    return NewVersion(
        task=payload["task"],
        estimator=payload["estimator"],
        params=payload["params"],
        target=payload["target"],
        features=trained.features,
        classes=trained.classes,
        metrics=trained.metrics,
        library_versions=trained.library_versions,
        artifact=trained.artifact,
        sha256=trained.sha256,
        training_rows=trained.training_rows,
        holdout_rows=trained.holdout_rows,
        train_seconds=trained.train_seconds,
    )


async def train(ctx: JobContext) -> Any:
    payload = ctx.job.payload
    store = MlStore(ctx.db)
    tenant = ctx.job.tenant_id

    async def register() -> dict[str, Any]:
        done = await store.get_version_by_job(tenant_id=tenant, job_id=ctx.job.id)
        if done is not None:
            return _result(*done)
        await ctx.progress("training", 10)
        new = await asyncio.to_thread(_train, payload)
        ctx.raise_if_cancelled()
        await ctx.progress("registering", 90)
        await store.insert_version(tenant_id=tenant, name=payload["name"], job_id=ctx.job.id, new=new)
        found = await store.get_version_by_job(tenant_id=tenant, job_id=ctx.job.id)
        assert found is not None
        return _result(*found)

    return await ctx.step("register", register)
