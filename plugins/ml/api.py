"""HTTP endpoints of the ml plugin (mounted under /api/v1/ml): they parse, call the service, and render.

The Open Inference Protocol routes (`/v2/...`) are root routes, in plugins/ml/v2.py.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from app.auth import tenant_id
from app.jobs import JobPublic
from app.pagination import PageQuery
from app.plugin_kit import describe_route
from app.plugins import service
from app.routing import api_route, empty_response, json_response, read_body, read_path, read_query
from plugins.ml.interface import ML, MlService
from plugins.ml.schemas import (
    AliasMove,
    AliasPath,
    AliasPublic,
    ModelList,
    ModelPublic,
    NamePath,
    PredictIn,
    PredictOut,
    TrainIn,
    VersionPath,
)


def _service(request: Request) -> MlService:
    return service(request, ML)


async def train_model(request: Request) -> Response:
    """Queue a training run: 202 with the job (`GET /api/v1/jobs/{id}`); its result names the new version."""
    p = read_path(request, NamePath)
    body = await read_body(request, TrainIn)
    job = await _service(request).train_model(tenant_id=tenant_id(request), name=p.name, request=body)
    return json_response(job, status=202)


async def list_models(request: Request) -> Response:
    q = read_query(request, PageQuery)
    return json_response(
        await _service(request).list_models(tenant_id=tenant_id(request), limit=q.limit, cursor=q.cursor)
    )


async def get_model(request: Request) -> Response:
    p = read_path(request, NamePath)
    return json_response(await _service(request).get_model(tenant_id=tenant_id(request), name=p.name))


async def set_alias(request: Request) -> Response:
    p = read_path(request, AliasPath)
    body = await read_body(request, AliasMove)
    moved = await _service(request).set_alias(
        tenant_id=tenant_id(request), name=p.name, alias=p.alias, version=body.version
    )
    return json_response(moved)


async def delete_version(request: Request) -> Response:
    p = read_path(request, VersionPath)
    await _service(request).delete_version(tenant_id=tenant_id(request), name=p.name, version=p.version)
    return empty_response()


async def delete_model(request: Request) -> Response:
    p = read_path(request, NamePath)
    await _service(request).delete_model(tenant_id=tenant_id(request), name=p.name)
    return empty_response()


async def predict(request: Request) -> Response:
    """Predictions for JSON rows keyed by feature name (version or alias; neither: `champion`, else latest)."""
    p = read_path(request, NamePath)
    body = await read_body(request, PredictIn)
    out = await _service(request).predict(
        tenant_id=tenant_id(request), name=p.name, rows=body.rows, version=body.version, alias=body.alias
    )
    return json_response(out)


def routes() -> list[BaseRoute]:
    tags: dict[str, Any] = {"tags": ("ml",)}
    return [
        describe_route(ML),
        api_route("GET", "/models", list_models, "List models", query=PageQuery, response=ModelList, **tags),
        api_route(
            "GET",
            "/models/{name}",
            get_model,
            "Get a model with its aliases and versions",
            path=NamePath,
            response=ModelPublic,
            errors=(404,),
            **tags,
        ),
        api_route(
            "DELETE",
            "/models/{name}",
            delete_model,
            "Delete a model with its versions",
            path=NamePath,
            status=204,
            errors=(404,),
            **tags,
        ),
        api_route(
            "POST",
            "/models/{name}/train",
            train_model,
            "Train a new version (a job on the queue)",
            path=NamePath,
            body=TrainIn,
            response=JobPublic,
            status=202,
            errors=(404, 409, 413, 422),
            **tags,
        ),
        api_route(
            "DELETE",
            "/models/{name}/versions/{version}",
            delete_version,
            "Delete a model version",
            path=VersionPath,
            status=204,
            errors=(404,),
            **tags,
        ),
        api_route(
            "PUT",
            "/models/{name}/aliases/{alias}",
            set_alias,
            "Point an alias at a version",
            path=AliasPath,
            body=AliasMove,
            response=AliasPublic,
            errors=(404, 422),
            **tags,
        ),
        api_route(
            "POST",
            "/models/{name}/predict",
            predict,
            "Predict from JSON rows",
            path=NamePath,
            body=PredictIn,
            response=PredictOut,
            errors=(400, 404, 409, 413, 422),
            **tags,
        ),
    ]
