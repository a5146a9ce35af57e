"""The `ml.train` job: train in a child process (plugins/ml/trainer.py), register the version.

Training and registering are one step of the job: a retried job (its worker died) first looks for the version it
wrote (versions carry their job's id) and returns it, so a retry never adds a second version. The child process
keeps scikit-learn off the serving process entirely (its interpreter, its memory, its import time); it is killed
when the job is cancelled or runs past FAAS_ML_TRAIN_TIMEOUT_SECONDS (as set when the job was queued), so neither
leaves work running behind.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import sys
import time
from typing import Any

from app.errors import InvalidInput
from app.jobs import JobContext
from plugins.ml.errors import TrainingFailed
from plugins.ml.store import MlStore, NewVersion, VersionRow

log = logging.getLogger("faas.ml")
POLL_SECONDS = 0.25  # how often a running training checks for cancellation and its time limit
# One core per training: BLAS and OpenMP would otherwise start a thread per core, beside the server's own work.
THREADS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _result(name: str, row: VersionRow) -> dict[str, Any]:
    return {
        "model": name,
        "version": row.version,
        "sha256": row.sha256,
        "metrics": row.metrics,
        "train_seconds": row.train_seconds,
    }


async def run_trainer(
    ctx: JobContext, payload: dict[str, Any], *, limit_seconds: float
) -> tuple[dict[str, Any], bytes]:
    """The child's reply (metadata, artifact). TrainingFailed when it fails or takes longer than `limit_seconds`;
    cancellation kills it."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "plugins.ml.trainer",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **THREADS},
    )
    talk = asyncio.ensure_future(proc.communicate(json.dumps(payload).encode()))
    started = time.monotonic()
    try:
        while not talk.done():
            await asyncio.wait({talk}, timeout=POLL_SECONDS)
            if talk.done():
                break
            ctx.raise_if_cancelled()
            if time.monotonic() - started > limit_seconds:
                raise TrainingFailed(
                    f"training took longer than {limit_seconds:g} s and was stopped: send fewer rows, or fewer or "
                    "smaller trees",
                    extra={"limit_seconds": limit_seconds},
                )
        stdout, stderr = talk.result()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        if not talk.done():
            talk.cancel()
    if proc.returncode != 0:
        log.error("training process exited with %s: %s", proc.returncode, stderr.decode(errors="replace")[-2000:])
        raise TrainingFailed(f"the training process failed (exit status {proc.returncode}); the log has the reason")
    header, _, artifact = stdout.partition(b"\n")
    meta: dict[str, Any] = json.loads(header)
    if "error" in meta:
        raise InvalidInput(meta["error"])
    # The digest is the parent's own: what is stored is exactly what was hashed here.
    digest = await asyncio.to_thread(lambda: hashlib.sha256(artifact).hexdigest())
    if len(artifact) != meta["artifact_bytes"] or digest != meta["sha256"]:
        raise TrainingFailed("the training process's reply was cut short or garbled")
    return meta, artifact


async def train(ctx: JobContext) -> Any:
    payload = ctx.job.payload
    store = MlStore(ctx.db)
    tenant = ctx.job.tenant_id

    async def register() -> dict[str, Any]:
        done = await store.get_version_by_job(tenant_id=tenant, job_id=ctx.job.id)
        if done is not None:
            return _result(*done)
        await ctx.progress("training", 10)
        meta, artifact = await run_trainer(ctx, payload, limit_seconds=float(payload["timeout_seconds"]))
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
