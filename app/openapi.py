"""The OpenAPI 3.1 document, generated from the routes' `Operation`s and their pydantic types.

The same models that validate requests produce the schemas here, so the contract cannot drift from the code.
Every `ApiRoute` appears; a route of any other kind makes generation fail rather than go undocumented.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from app import __version__
from app.routing import PATH_PARAM, ApiRoute, json_response

_ERROR_TEXT = {
    400: "Malformed request",
    401: "Missing or invalid API key",
    403: "Revoked key or forbidden",
    404: "Not found (or another tenant's)",
    409: "Conflict",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Validation failed",
    429: "Rate limited",
    502: "Upstream failed",
    503: "Unavailable",
    504: "Upstream timed out",
}

# How a second success status of the same body differs from the first (`Operation.also`).
_ALSO_TEXT = {202: "accepted, not finished yet", 503: "not all checks passed"}

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "request_id": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
}


def build(routes: Sequence[BaseRoute], *, title: str = "Motadata FaaS") -> dict[str, Any]:
    api_routes: list[ApiRoute] = []
    for route in routes:
        if not isinstance(route, ApiRoute):
            raise TypeError(f"route {getattr(route, 'path', route)!r} is not an ApiRoute and cannot be documented")
        api_routes.append(route)

    models: dict[tuple[type[BaseModel], Literal["validation", "serialization"]], None] = {}
    for r in api_routes:
        op = r.operation
        if op.body is not None:
            models[(op.body, "validation")] = None
        if op.response is not None:
            models[(op.response, "serialization")] = None
    keys, defs = models_json_schema(list(models), ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    schemas["Problem"] = PROBLEM_SCHEMA

    paths: dict[str, dict[str, Any]] = {}
    for r in api_routes:
        op = r.operation
        path = PATH_PARAM.sub(r"{\1}", r.path)
        params: list[dict[str, Any]] = []
        if op.path is not None:
            pschema = op.path.model_json_schema(ref_template="#/components/schemas/{model}")
            for name in PATH_PARAM.findall(r.path):
                params.append({"name": name, "in": "path", "required": True, "schema": pschema["properties"][name]})
        if op.query is not None:
            qschema = op.query.model_json_schema(ref_template="#/components/schemas/{model}")
            required = set(qschema.get("required", []))
            for name, prop in qschema.get("properties", {}).items():
                params.append({"name": name, "in": "query", "required": name in required, "schema": prop})
        operation: dict[str, Any] = {
            "operationId": r.name,
            "summary": op.summary,
            "tags": list(op.tags),
            "responses": {},
        }
        if r.endpoint.__doc__:
            operation["description"] = r.endpoint.__doc__.strip()
        if params:
            operation["parameters"] = params
        if op.body is not None or op.forms:
            bodies = {} if op.body is None else {"application/json": {"schema": keys[(op.body, "validation")]}}
            bodies.update({media: {"schema": form} for media, form in op.forms.items()})
            operation["requestBody"] = {"required": True, "content": bodies}
        success: dict[str, Any] = {"description": op.summary}
        content: dict[str, Any] = {}
        if op.response is not None:
            content["application/json"] = {"schema": keys[(op.response, "serialization")]}
        for media, media_schema in op.content.items():
            content[media] = {"schema": media_schema}
        if content:
            success["content"] = content
        operation["responses"][str(op.status)] = success
        for code in op.also:
            operation["responses"][str(code)] = {
                **success,
                "description": f"{op.summary} ({_ALSO_TEXT.get(code, code)})",
            }
        codes = set(op.errors)
        if op.path is not None:
            codes.add(422)
        if op.body is not None or op.query is not None:
            codes |= {400, 422} if op.body is not None else {422}
        if op.body is not None:
            codes |= {413, 415}
        # A route that answers some errors with another status (the OpenAI routes: 400 for a body that fails
        # validation) documents the status it sends.
        codes = {r.error_statuses.get(code, code) for code in codes}
        if op.auth == "tenant":
            codes |= {401, 403}
            operation["security"] = [{"apiKey": []}]
        elif op.auth == "admin":
            codes |= {401, 403}
            operation["security"] = [{"adminKey": []}]
        else:
            operation["security"] = []
        for code in sorted(codes):
            operation["responses"][str(code)] = {
                "description": _ERROR_TEXT.get(code, "Error"),
                "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
            }
        paths.setdefault(path, {})[r.method.lower()] = operation

    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": __version__,
            "description": "Seven AI-platform services (gateway, agents, rag, cache, ml, prompts, ingestion) "
            "in one program. Errors are RFC 9457 problem documents.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer", "description": "A tenant API key"},
                "adminKey": {"type": "http", "scheme": "bearer", "description": "FAAS_ADMIN_KEY"},
            },
        },
    }


async def openapi_endpoint(request: Request) -> Response:
    """The OpenAPI 3.1 document of this deployment (only the mounted plugins)."""
    return json_response(request.state.openapi)
