"""The direct (in-process) ml service, opened by `open_direct(ctx)`.

Training data is checked here, before a job is queued (so bad data is a 422 now, not a failed job later); the
`ml.train` job (plugins/ml/jobs.py) trains and registers the version. Serving resolves the version in the database
on every request, in one statement (aliases move, versions may be deleted), then takes the loaded ONNX session and
the version's record from a per-replica LRU keyed by (tenant, model id, version): versions are immutable and a
model created again under the same name gets a new id, so the only invalidation is a delete. A session is built,
and the artifact's SHA-256 checked, off the event loop; so are large inputs (parsing and running them), small ones
run inline, where a thread hop would cost more than the work.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from cachetools import LRUCache

from app import __version__
from app.db import Database
from app.errors import Conflict, NotFound
from app.jobs import JobPublic, JobQueue
from app.plugin_kit import LocalDescription, PluginInfo, Readiness
from app.plugins import PluginContext
from plugins.ml.config import MlConfig
from plugins.ml.data import Dataset, dataset
from plugins.ml.errors import BadTensor
from plugins.ml.schemas import (
    AliasPublic,
    FeaturePublic,
    InferIn,
    InferOut,
    InferOutput,
    ModelList,
    ModelMetadata,
    ModelPublic,
    ModelReady,
    ModelSummary,
    PredictOut,
    ServerLive,
    ServerMetadata,
    ServerReady,
    TrainIn,
    VersionPublic,
)
from plugins.ml.store import MlStore, ModelRow, VersionRow
from plugins.ml.trainers import Trainers

if TYPE_CHECKING:
    from plugins.ml.serving import LoadedModel, Prediction

CAPABILITIES = ("train", "registry", "predict", "open-inference-protocol-v2", "onnx")
TRAIN_KIND = "ml.train"
SERVER_NAME = "motadata-faas-ml"
# Values (rows x features) above which parsing and running a prediction moves to a worker thread.
OFF_LOOP_VALUES = 5_000
# Training data checked on the event loop up to this many values; a larger body is checked in a thread.
OFF_LOOP_TRAIN_VALUES = 20_000
T = TypeVar("T")


def version_public(row: VersionRow) -> VersionPublic:
    return VersionPublic(
        version=row.version,
        task=row.task,  # type: ignore[arg-type]  # the column's CHECK constraint holds the same three values
        estimator=row.estimator,  # type: ignore[arg-type]
        params=row.params,
        target=row.target,
        features=[FeaturePublic.model_validate(f) for f in row.features],
        classes=row.classes,
        metrics=row.metrics,
        library_versions=row.library_versions,
        sha256=row.sha256,
        artifact_bytes=row.artifact_bytes,
        training_rows=row.training_rows,
        holdout_rows=row.holdout_rows,
        train_seconds=row.train_seconds,
        job_id=row.job_id,
        created_at=row.created_at,
    )


def _summary(row: ModelRow) -> ModelSummary:
    return ModelSummary(
        name=row.name,
        task=row.task,  # type: ignore[arg-type]
        latest_version=row.latest_version,
        aliases=row.aliases,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def _maybe_off_loop(values: int, limit: int, fn: Callable[[], T]) -> T:
    return await asyncio.to_thread(fn) if values > limit else fn()


class DirectMlService:
    def __init__(
        self, *, db: Database, jobs: JobQueue, config: MlConfig, trainers: Trainers, about: LocalDescription
    ) -> None:
        self.store = MlStore(db)
        self.trainers = trainers  # used by the ml.train job (plugins/ml/jobs.py), where a worker runs it
        self.db = db
        self.jobs = jobs
        self.config = config
        self._about = about
        # (tenant, model id, version) -> the loaded version and its registry record
        self._loaded: LRUCache[tuple[str, str, int], tuple[LoadedModel, VersionRow]] = LRUCache(
            maxsize=config.loaded_models
        )
        self._db_ok: tuple[float, bool] = (0.0, True)

    async def describe(self) -> PluginInfo:
        return self._about.info()

    async def ready(self) -> Readiness:
        return {"ok": True}

    # --- registry and training ------------------------------------------------------------------------------------

    async def train_model(self, *, tenant_id: str, name: str, request: TrainIn) -> JobPublic:
        existing = await self.store.find_model(tenant_id=tenant_id, name=name)
        if existing is not None and existing.task != request.task:
            raise Conflict(f"model {name!r} does {existing.task}: train a {request.task} model under another name")

        def check() -> tuple[Dataset, str]:
            checked = dataset(
                rows=request.rows,
                csv_text=request.csv,
                target=request.target,
                task=request.task,
                max_rows=self.config.max_train_rows,
                max_cells=self.config.max_train_values,
            )
            return checked, checked.encode()

        size = len(request.csv) // 8 if request.csv is not None else sum(len(r) for r in request.rows or ())
        checked, encoded = await _maybe_off_loop(size, OFF_LOOP_TRAIN_VALUES, check)
        payload = {
            "name": name,
            "task": request.task,
            "estimator": request.estimator,
            "params": request.params,
            "test_size": request.test_size,
            "target": request.target if request.task != "anomaly" else None,
            "rows": checked.rows,
            "data": encoded,  # ASCII-escaped JSON: any client text survives jsonb
            "timeout_seconds": self.config.train_timeout_seconds,
        }
        return await self.jobs.enqueue(tenant_id=tenant_id, kind=TRAIN_KIND, payload=payload)

    async def list_models(self, *, tenant_id: str, limit: int = 20, cursor: str | None = None) -> ModelList:
        page = await self.store.list_models(tenant_id=tenant_id, limit=limit, cursor=cursor)
        return ModelList(data=[_summary(r) for r in page.items], next_cursor=page.next_cursor)

    async def get_model(self, *, tenant_id: str, name: str) -> ModelPublic:
        row = await self.store.get_model(tenant_id=tenant_id, name=name)
        versions = await self.store.list_versions(tenant_id=tenant_id, model_id=row.id)
        return ModelPublic(**_summary(row).model_dump(), versions=[version_public(v) for v in versions])

    async def set_alias(self, *, tenant_id: str, name: str, alias: str, version: int) -> AliasPublic:
        row = await self.store.get_model(tenant_id=tenant_id, name=name)
        if not await self.store.set_alias(tenant_id=tenant_id, model_id=row.id, alias=alias, version=version):
            raise NotFound(f"model {name!r} has no version {version}")
        return AliasPublic(name=name, alias=alias, version=version)

    async def delete_version(self, *, tenant_id: str, name: str, version: int) -> None:
        row = await self.store.get_model(tenant_id=tenant_id, name=name)
        if not await self.store.delete_version(tenant_id=tenant_id, model_id=row.id, version=version):
            raise NotFound(f"model {name!r} has no version {version}")
        self._loaded.pop((tenant_id, row.id, version), None)

    async def delete_model(self, *, tenant_id: str, name: str) -> None:
        model_id = await self.store.delete_model(tenant_id=tenant_id, name=name)
        for key in [k for k in self._loaded if k[1] == model_id]:
            self._loaded.pop(key, None)

    # --- serving --------------------------------------------------------------------------------------------------

    async def _resolve(
        self, *, tenant_id: str, name: str, version: int | None = None, alias: str | None = None
    ) -> tuple[LoadedModel, VersionRow]:
        """The version a request means (by number, by alias, else `champion`, else the latest), loaded. The version
        is resolved in the database every time (aliases move, versions go); what it resolves to is immutable and
        comes from this replica's LRU after the first load."""
        model_id, number = await self.store.resolve(tenant_id=tenant_id, name=name, version=version, alias=alias)
        key = (tenant_id, model_id, number)
        cached = self._loaded.get(key)
        if cached is not None:
            return cached
        from plugins.ml.serving import LoadedModel  # imports onnxruntime: on the first model served

        row = await self.store.get_version(tenant_id=tenant_id, model_id=model_id, version=number)
        artifact = await self.store.get_artifact(tenant_id=tenant_id, model_id=model_id, version=number)
        if row is None or artifact is None:
            raise NotFound(f"model {name!r} has no version {number}")
        loaded = await asyncio.to_thread(
            LoadedModel.load,
            artifact=artifact,
            sha256=row.sha256,
            task=row.task,
            features=row.features,
            classes=row.classes,
        )
        self._loaded[key] = (loaded, row)
        return loaded, row

    async def predict(
        self,
        *,
        tenant_id: str,
        name: str,
        rows: list[dict[str, Any]],
        version: int | None = None,
        alias: str | None = None,
    ) -> PredictOut:
        loaded, row = await self._resolve(tenant_id=tenant_id, name=name, version=version, alias=alias)

        def run() -> Prediction:
            return loaded.predict(loaded.columns_from_rows(rows))

        out = await _maybe_off_loop(len(rows) * len(row.features), OFF_LOOP_VALUES, run)
        return PredictOut(
            model=name,
            version=row.version,
            predictions=out.labels,
            classes=row.classes,
            probabilities=out.probabilities,
            scores=out.scores,
        )

    async def server_live(self) -> ServerLive:
        return ServerLive(live=True)

    async def server_ready(self) -> ServerReady:
        # Public, so cheap: the database is asked at most once a second per replica.
        checked, ok = self._db_ok
        if time.monotonic() - checked > 1.0:
            ok = await self.db.ping()
            self._db_ok = (time.monotonic(), ok)
        return ServerReady(ready=ok)

    async def server_metadata(self) -> ServerMetadata:
        return ServerMetadata(name=SERVER_NAME, version=__version__, extensions=[])

    async def model_metadata(self, *, tenant_id: str, name: str, version: int | None = None) -> ModelMetadata:
        from plugins.ml.serving import tensor_metadata

        _, row = await self._resolve(tenant_id=tenant_id, name=name, version=version)
        versions = await self.store.list_versions(tenant_id=tenant_id, model_id=row.model_id)
        inputs, outputs = tensor_metadata(row.task, row.features, row.classes)
        return ModelMetadata(
            name=name,
            versions=[str(v.version) for v in versions] if version is None else [str(row.version)],
            platform="onnxruntime_onnx",
            inputs=inputs,
            outputs=outputs,
        )

    async def model_ready(self, *, tenant_id: str, name: str, version: int | None = None) -> ModelReady:
        _, row = await self._resolve(tenant_id=tenant_id, name=name, version=version)
        return ModelReady(name=name, version=str(row.version), ready=True)

    async def infer(self, *, tenant_id: str, name: str, request: InferIn, version: int | None = None) -> InferOut:
        from plugins.ml.serving import tensor_metadata

        loaded, row = await self._resolve(tenant_id=tenant_id, name=name, version=version)
        _, described = tensor_metadata(row.task, row.features, row.classes)
        available = [o.name for o in described]
        wanted = available if not request.outputs else [o.name for o in request.outputs]
        unknown = [n for n in wanted if n not in available]
        if unknown:
            raise BadTensor(f"unknown output {unknown[0]!r}: this model has {', '.join(available)}")

        def run() -> Prediction:
            return loaded.predict(loaded.columns_from_tensors(request.inputs))

        out = await _maybe_off_loop(sum(len(t.data) for t in request.inputs), OFF_LOOP_VALUES, run)
        n = len(out.labels)
        datatypes = {o.name: o.datatype for o in described}
        produced: dict[str, InferOutput] = {
            "predict": InferOutput(name="predict", shape=[n], datatype=datatypes["predict"], data=out.labels)
        }
        if out.probabilities is not None:
            width = len(out.probabilities[0]) if n else 0
            flat = [p for per_row in out.probabilities for p in per_row]
            produced["predict_proba"] = InferOutput(name="predict_proba", shape=[n, width], datatype="FP32", data=flat)
        if out.scores is not None:
            produced["decision_function"] = InferOutput(
                name="decision_function", shape=[n], datatype="FP32", data=out.scores
            )
        return InferOut(
            model_name=name,
            model_version=str(row.version),
            id=request.id,
            outputs=[produced[k] for k in wanted],
        )


@asynccontextmanager
async def open_direct(ctx: PluginContext) -> AsyncIterator[DirectMlService]:
    """The direct service with its training processes (started by the first training), stopped when it closes."""
    config = MlConfig.load(ctx.settings)
    trainers = Trainers(size=config.trainers)
    try:
        yield DirectMlService(
            db=ctx.db, jobs=ctx.jobs, config=config, trainers=trainers, about=LocalDescription(ctx, CAPABILITIES)
        )
    finally:
        await trainers.aclose()
