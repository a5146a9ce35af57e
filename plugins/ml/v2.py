"""The Open Inference Protocol (KServe V2) REST routes, at their own root paths (`/v2/...`).

Health and server metadata need no key; everything about a model does, and the tenant comes from the key as on
every other route (another tenant's model is 404). Without `/versions/{version}` the `champion` alias is served,
else the latest version. Errors keep the problem JSON every route answers and add the protocol's own
`{"error": "<message>"}` member, so V2 clients (tritonclient, KServe's) read the reason; authentication errors too.
In remote mode these routes call the same routes of the serving deployment (plugins/ml/remote.py).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, request_response

from app.auth import Auth, tenant_id
from app.codec import dumps
from app.errors import PROBLEM_MEDIA_TYPE, ServiceError
from app.plugins import service
from app.routing import ApiRoute, Endpoint, Operation, json_response, read_body, read_path
from plugins.ml.interface import ML, MlService
from plugins.ml.schemas import (
    InferIn,
    InferOut,
    ModelMetadata,
    ModelReady,
    ServerLive,
    ServerMetadata,
    ServerReady,
    V2ModelPath,
    V2VersionPath,
)


def v2_error(exc: ServiceError) -> Response:
    body = exc.to_problem()
    body["error"] = exc.detail
    return Response(dumps(body), status_code=exc.status, headers=exc.headers, media_type=PROBLEM_MEDIA_TYPE)


def _v2_errors(endpoint: Endpoint) -> Endpoint:
    async def wrapped(request: Request) -> Response:
        try:
            return await endpoint(request)
        except ServiceError as exc:
            return v2_error(exc)

    wrapped.__name__ = endpoint.__name__
    wrapped.__doc__ = endpoint.__doc__
    return wrapped


class V2Route(ApiRoute):
    """An ApiRoute whose errors, authentication included, also carry the protocol's `error` member."""

    def __init__(
        self, path: str, endpoint: Endpoint, *, method: str, operation: Operation, name: str | None = None
    ) -> None:
        super().__init__(path, endpoint, method=method, operation=operation, name=name)
        self.app = request_response(_v2_errors(self.endpoint))


def _service(request: Request) -> MlService:
    return service(request, ML)


def _version(request: Request) -> tuple[str, int | None]:
    if "version" in request.path_params:
        p = read_path(request, V2VersionPath)
        return p.name, int(p.version)
    return read_path(request, V2ModelPath).name, None


async def server_live(request: Request) -> Response:
    return json_response(await _service(request).server_live())


async def server_ready(request: Request) -> Response:
    ready = await _service(request).server_ready()
    return json_response(ready, status=200 if ready.ready else 503)


async def server_metadata(request: Request) -> Response:
    return json_response(await _service(request).server_metadata())


async def model_metadata(request: Request) -> Response:
    name, version = _version(request)
    return json_response(
        await _service(request).model_metadata(tenant_id=tenant_id(request), name=name, version=version)
    )


async def model_ready(request: Request) -> Response:
    """200 when the version loads; 404 when there is no such version, 409 when its artifact is refused."""
    name, version = _version(request)
    return json_response(await _service(request).model_ready(tenant_id=tenant_id(request), name=name, version=version))


async def infer(request: Request) -> Response:
    name, version = _version(request)
    body = await read_body(request, InferIn)
    out = await _service(request).infer(tenant_id=tenant_id(request), name=name, request=body, version=version)
    return json_response(out)


# The same endpoints on the paths that name a version (a route's name, its operationId, comes from its endpoint).
async def model_version_metadata(request: Request) -> Response:
    return await model_metadata(request)


async def model_version_ready(request: Request) -> Response:
    return await model_ready(request)


async def infer_version(request: Request) -> Response:
    return await infer(request)


def _route(
    method: str, template: str, endpoint: Endpoint, summary: str, *, auth: Auth = "tenant", serves: str = "", **kw: Any
) -> V2Route:
    op = Operation(summary=summary, tags=("v2",), auth=auth, serves=(serves or endpoint.__name__,), **kw)
    return V2Route(template, endpoint, method=method, operation=op)


def root_routes() -> list[BaseRoute]:
    model: dict[str, Any] = {"path": V2ModelPath}
    version: dict[str, Any] = {"path": V2VersionPath}
    return [
        _route("GET", "/v2/health/live", server_live, "V2: server live", auth="none", response=ServerLive),
        _route(
            "GET",
            "/v2/health/ready",
            server_ready,
            "V2: server ready",
            auth="none",
            response=ServerReady,
            also=(503,),
        ),
        _route("GET", "/v2", server_metadata, "V2: server metadata", auth="none", response=ServerMetadata),
        _route(
            "GET",
            "/v2/models/{name}",
            model_metadata,
            "V2: model metadata",
            response=ModelMetadata,
            errors=(404,),
            **model,
        ),
        _route(
            "GET",
            "/v2/models/{name}/versions/{version}",
            model_version_metadata,
            "V2: model version metadata",
            serves="model_metadata",
            response=ModelMetadata,
            errors=(404,),
            **version,
        ),
        _route(
            "GET",
            "/v2/models/{name}/ready",
            model_ready,
            "V2: model ready",
            response=ModelReady,
            errors=(404, 409),
            **model,
        ),
        _route(
            "GET",
            "/v2/models/{name}/versions/{version}/ready",
            model_version_ready,
            "V2: model version ready",
            serves="model_ready",
            response=ModelReady,
            errors=(404, 409),
            **version,
        ),
        _route(
            "POST",
            "/v2/models/{name}/infer",
            infer,
            "V2: infer",
            body=InferIn,
            response=InferOut,
            errors=(400, 404, 409, 413, 422),
            **model,
        ),
        _route(
            "POST",
            "/v2/models/{name}/versions/{version}/infer",
            infer_version,
            "V2: infer with a model version",
            serves="infer",
            body=InferIn,
            response=InferOut,
            errors=(400, 404, 409, 413, 422),
            **version,
        ),
    ]
