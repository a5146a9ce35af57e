"""The admin API (`/api/v1/admin/...`): tenants and their API keys, guarded by FAAS_ADMIN_KEY."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from app.pagination import PageQuery
from app.routing import api_route, json_response, read_body, read_path, read_query
from app.schemas import ResourceId, Schema
from app.tenancy import ApiKey, Tenant, TenantStore


class TenantCreate(Schema):
    name: str = Field(
        min_length=1,
        max_length=200,
        # No NUL anywhere: PostgreSQL text cannot hold it.
        pattern=r"^[^\s\x00]([^\x00\n]*[^\s\x00])?$",
        description="Unique display name (no leading/trailing spaces)",
    )


class TenantPublic(Schema):
    tenant_id: str
    name: str
    created_at: datetime


class TenantCreated(TenantPublic):
    api_key: str = Field(description="The tenant's first API key. Shown once; only its hash is stored.")
    key_id: str


class TenantList(Schema):
    data: list[TenantPublic]
    next_cursor: str | None


class KeyCreate(Schema):
    # No NUL: PostgreSQL text cannot hold it (the schema says so, rather than the database refusing it).
    name: str = Field(default="", max_length=200, pattern=r"^[^\x00]*$", description="A label to recognise the key")


class KeyPublic(Schema):
    key_id: str
    tenant_id: str
    name: str
    prefix: str = Field(description="The first characters of the key, to recognise it")
    created_at: datetime
    revoked_at: datetime | None


class KeyCreated(KeyPublic):
    api_key: str = Field(description="Shown once; only its hash is stored.")


class KeyList(Schema):
    data: list[KeyPublic]


class TenantPath(Schema):
    tenant_id: ResourceId


class KeyPath(Schema):
    tenant_id: ResourceId
    key_id: ResourceId


def tenant_public(t: Tenant) -> TenantPublic:
    return TenantPublic(tenant_id=t.id, name=t.name, created_at=t.created_at)


def key_public(k: ApiKey) -> KeyPublic:
    return KeyPublic(
        key_id=k.id,
        tenant_id=k.tenant_id,
        name=k.name,
        prefix=k.prefix,
        created_at=k.created_at,
        revoked_at=k.revoked_at,
    )


def _store(request: Request) -> TenantStore:
    store: TenantStore = request.state.tenants
    return store


async def create_tenant(request: Request) -> Response:
    body = await read_body(request, TenantCreate)
    tenant, key, secret = await _store(request).insert_tenant(name=body.name)
    out = TenantCreated(**tenant_public(tenant).model_dump(), api_key=secret, key_id=key.id)
    return json_response(out, status=201)


async def list_tenants(request: Request) -> Response:
    q = read_query(request, PageQuery)
    page = await _store(request).list_tenants(limit=q.limit, cursor=q.cursor)
    return json_response(TenantList(data=[tenant_public(t) for t in page.items], next_cursor=page.next_cursor))


async def get_tenant(request: Request) -> Response:
    p = read_path(request, TenantPath)
    tenant = await _store(request).get_tenant(tenant_id=p.tenant_id)
    return json_response(tenant_public(tenant))


async def create_key(request: Request) -> Response:
    p = read_path(request, TenantPath)
    body = await read_body(request, KeyCreate)
    key, secret = await _store(request).insert_key(tenant_id=p.tenant_id, name=body.name)
    return json_response(KeyCreated(**key_public(key).model_dump(), api_key=secret), status=201)


async def list_keys(request: Request) -> Response:
    p = read_path(request, TenantPath)
    keys = await _store(request).list_keys(tenant_id=p.tenant_id)
    return json_response(KeyList(data=[key_public(k) for k in keys]))


async def revoke_key(request: Request) -> Response:
    p = read_path(request, KeyPath)
    key = await _store(request).revoke_key(tenant_id=p.tenant_id, key_id=p.key_id)
    return json_response(key_public(key))


def routes() -> list[BaseRoute]:
    common = {"auth": "admin", "tags": ("admin",)}
    return [
        api_route(
            "POST",
            "/tenants",
            create_tenant,
            "Create a tenant and its first API key",
            body=TenantCreate,
            response=TenantCreated,
            status=201,
            errors=(409,),
            **common,
        ),
        api_route(
            "GET",
            "/tenants",
            list_tenants,
            "List tenants",
            query=PageQuery,
            response=TenantList,
            **common,
        ),
        api_route(
            "GET",
            "/tenants/{tenant_id}",
            get_tenant,
            "Get a tenant",
            path=TenantPath,
            response=TenantPublic,
            errors=(404,),
            **common,
        ),
        api_route(
            "POST",
            "/tenants/{tenant_id}/keys",
            create_key,
            "Issue another API key",
            path=TenantPath,
            body=KeyCreate,
            response=KeyCreated,
            status=201,
            errors=(404,),
            **common,
        ),
        api_route(
            "GET",
            "/tenants/{tenant_id}/keys",
            list_keys,
            "List a tenant's API keys",
            path=TenantPath,
            response=KeyList,
            errors=(404,),
            **common,
        ),
        api_route(
            "DELETE",
            "/tenants/{tenant_id}/keys/{key_id}",
            revoke_key,
            "Revoke an API key (it answers 403 from then on)",
            path=KeyPath,
            response=KeyPublic,
            errors=(404,),
            **common,
        ),
    ]
