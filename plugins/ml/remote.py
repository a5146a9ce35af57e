"""`MlService` over HTTP: the same routes and schemas, served by the deployment at FAAS_ML_URL.

The registry and JSON predictions go to `/api/v1/ml/...`; the Open Inference Protocol to the serving deployment's
own `/v2/...` root routes, so a front in remote mode answers V2 exactly as the deployment behind it (its errors
come back as the same ServiceError and are rendered again, with the protocol's `error` member).
"""

from __future__ import annotations

from typing import Any

from app.jobs import JobPublic
from app.remote import RemoteService, remote_factory
from plugins.ml.schemas import (
    AliasMove,
    AliasPublic,
    InferIn,
    InferOut,
    ModelList,
    ModelMetadata,
    ModelPublic,
    ModelReady,
    PredictIn,
    PredictOut,
    ServerLive,
    ServerMetadata,
    ServerReady,
    TrainIn,
)

# Training data can be large (a CSV of several MB): give its upload time. Predictions are quick.
CLIENT_DEFAULTS = {"timeout": 60.0, "deadline": 120.0}


def _v2(name: str, version: int | None) -> str:
    return f"/v2/models/{name}" + (f"/versions/{version}" if version is not None else "")


class RemoteMlService(RemoteService):
    async def train_model(self, *, tenant_id: str, name: str, request: TrainIn) -> JobPublic:
        # The model itself: its JSON keeps a NaN as sent (the serving deployment refuses it, as a direct one would).
        return await self._client.call("POST", f"/models/{name}/train", JobPublic, tenant_id=tenant_id, body=request)

    async def list_models(self, *, tenant_id: str, limit: int = 20, cursor: str | None = None) -> ModelList:
        params = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        return await self._client.call("GET", "/models", ModelList, tenant_id=tenant_id, params=params)

    async def get_model(self, *, tenant_id: str, name: str) -> ModelPublic:
        return await self._client.call("GET", f"/models/{name}", ModelPublic, tenant_id=tenant_id)

    async def set_alias(self, *, tenant_id: str, name: str, alias: str, version: int) -> AliasPublic:
        body = AliasMove(version=version)
        return await self._client.call(
            "PUT", f"/models/{name}/aliases/{alias}", AliasPublic, tenant_id=tenant_id, body=body
        )

    async def delete_version(self, *, tenant_id: str, name: str, version: int) -> None:
        await self._client.send("DELETE", f"/models/{name}/versions/{version}", tenant_id=tenant_id)

    async def delete_model(self, *, tenant_id: str, name: str) -> None:
        await self._client.send("DELETE", f"/models/{name}", tenant_id=tenant_id)

    async def predict(
        self,
        *,
        tenant_id: str,
        name: str,
        rows: list[dict[str, Any]],
        version: int | None = None,
        alias: str | None = None,
    ) -> PredictOut:
        body = PredictIn.model_construct(rows=rows, version=version, alias=alias)
        return await self._client.call("POST", f"/models/{name}/predict", PredictOut, tenant_id=tenant_id, body=body)

    async def server_live(self) -> ServerLive:
        return await self._client.call("GET", "/v2/health/live", ServerLive, root=True)

    async def server_ready(self) -> ServerReady:
        # One plain try outside the breaker and retries, as /health/ready probes: 503 there means "not ready".
        report = await self._client.http.probe("/v2/health/ready")
        return ServerReady(ready=report.get("status") == 200)

    async def server_metadata(self) -> ServerMetadata:
        return await self._client.call("GET", "/v2", ServerMetadata, root=True)

    async def model_metadata(self, *, tenant_id: str, name: str, version: int | None = None) -> ModelMetadata:
        return await self._client.call("GET", _v2(name, version), ModelMetadata, tenant_id=tenant_id, root=True)

    async def model_ready(self, *, tenant_id: str, name: str, version: int | None = None) -> ModelReady:
        return await self._client.call("GET", _v2(name, version) + "/ready", ModelReady, tenant_id=tenant_id, root=True)

    async def infer(self, *, tenant_id: str, name: str, request: InferIn, version: int | None = None) -> InferOut:
        return await self._client.call(
            "POST", _v2(name, version) + "/infer", InferOut, tenant_id=tenant_id, body=request, root=True
        )


open_remote = remote_factory(RemoteMlService, defaults=CLIENT_DEFAULTS)
