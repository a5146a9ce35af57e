"""The ml service's contract: `MlService`, the one module another plugin may import (for types).

Other plugins reach it as `services.get(ML)` (the agents call `predict`); the request and response types it takes
are re-exported here.
"""

from __future__ import annotations

from typing import Any, Protocol

from app.jobs import JobPublic
from app.plugin_kit import PluginService
from app.plugins import ServiceKey
from plugins.ml.schemas import (
    AliasPublic,
    InferIn,
    InferOut,
    ModelList,
    ModelMetadata,
    ModelPublic,
    ModelReady,
    PredictOut,
    ServerLive,
    ServerMetadata,
    ServerReady,
    TrainIn,
)

__all__ = [
    "ML",
    "AliasPublic",
    "InferIn",
    "InferOut",
    "MlService",
    "ModelList",
    "ModelMetadata",
    "ModelPublic",
    "ModelReady",
    "PredictOut",
    "TrainIn",
]


class MlService(PluginService, Protocol):
    """What the ml plugin offers to endpoints and to other plugins, in either mode: a model registry, training
    jobs and predictions (JSON and the Open Inference Protocol).

    Every method is scoped to `tenant_id`; another tenant's model answers NotFound, exactly like a missing one.
    A model's version is immutable; without a version or an alias, the `champion` alias is served if set, else the
    latest version.
    """

    async def train_model(self, *, tenant_id: str, name: str, request: TrainIn) -> JobPublic:
        """Check the data and queue a training job (`ml.train`); its result names the new version. InvalidInput
        (422) for data that cannot train (a missing value, a target that is not a column, one class...),
        PayloadTooLarge (413) past a size limit, Conflict (409) when the model exists with another task."""
        ...

    async def list_models(self, *, tenant_id: str, limit: int = 20, cursor: str | None = None) -> ModelList:
        """Models by name, a page at a time."""
        ...

    async def get_model(self, *, tenant_id: str, name: str) -> ModelPublic:
        """The model with its aliases and every version (metrics, features, artifact SHA-256), newest first."""
        ...

    async def set_alias(self, *, tenant_id: str, name: str, alias: str, version: int) -> AliasPublic:
        """Point `alias` at `version` (creating the alias); NotFound when the model has no such version."""
        ...

    async def delete_version(self, *, tenant_id: str, name: str, version: int) -> None:
        """Delete one version (aliases pointing at it go with it)."""
        ...

    async def delete_model(self, *, tenant_id: str, name: str) -> None:
        """Delete the model with its versions and aliases."""
        ...

    async def predict(
        self,
        *,
        tenant_id: str,
        name: str,
        rows: list[dict[str, Any]],
        version: int | None = None,
        alias: str | None = None,
    ) -> PredictOut:
        """Predictions for JSON rows keyed by feature name. BadTensor (400) when a row does not fit the features,
        ArtifactRefused (409) when the stored artifact fails its SHA-256 check."""
        ...

    async def server_live(self) -> ServerLive:
        """V2 `GET /v2/health/live`: the server that serves the models is up."""
        ...

    async def server_ready(self) -> ServerReady:
        """V2 `GET /v2/health/ready`: the server that serves the models can serve (its database answers)."""
        ...

    async def server_metadata(self) -> ServerMetadata:
        """V2 `GET /v2`: name, version and extensions of the inference server."""
        ...

    async def model_metadata(self, *, tenant_id: str, name: str, version: int | None = None) -> ModelMetadata:
        """V2 model metadata: the versions, and the inputs and outputs with datatypes and shapes."""
        ...

    async def model_ready(self, *, tenant_id: str, name: str, version: int | None = None) -> ModelReady:
        """V2 model readiness: the version loads (its artifact passes the SHA-256 check)."""
        ...

    async def infer(self, *, tenant_id: str, name: str, request: InferIn, version: int | None = None) -> InferOut:
        """V2 inference. Outputs `predict`, and `predict_proba` (classifiers) or `decision_function` (anomaly).
        BadTensor (400) names what does not fit: a missing or unknown input, a shape, a datatype, a NaN."""
        ...


ML: ServiceKey[MlService] = ServiceKey("ml")
