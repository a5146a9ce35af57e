"""Who is calling: a tenant (by API key), the operator (by the admin key), or nobody.

`authenticate` is called by every `ApiRoute` before its endpoint, with the route's declared auth level.
The tenant always comes from the key (or, for service-to-service calls, from a verified signature);
a tenant header sent by an outside client is never read, nor is its deadline header: only a verified signed call
may bound the time this deployment spends on it (`Principal.deadline`, applied by app.routing).
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from typing import Literal

from starlette.requests import Request

from app import context
from app.errors import Forbidden, Unauthenticated
from app.settings import Settings
from app.signing import TENANT_HEADER
from app.tenancy import TenantStore

# Who may call a route: a tenant key, the admin key, or anyone. Declared per route (app.routing.Operation).
Auth = Literal["tenant", "admin", "none"]
TENANT_SCOPE_KEY = "faas.tenant_id"


@dataclass(frozen=True)
class Principal:
    tenant_id: str | None
    key_id: str | None = None
    admin: bool = False
    internal: bool = False
    deadline: float | None = None  # seconds the signed caller still waits (its X-Faas-Deadline-Ms)


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("the Authorization header must be `Bearer <api key>`")
    return token.strip()


async def authenticate(request: Request, level: Auth) -> Principal | None:
    if level == "none":
        return None
    settings: Settings = request.state.settings
    verifier = getattr(request.state, "internal_verifier", None)
    store: TenantStore = request.state.tenants
    if level == "admin":
        principal = _admin(request, settings)
        if verifier is not None and verifier.is_signed(request) and request.headers.get(TENANT_HEADER):
            # A front relaying the operator's call about one tenant (its policy): learn the tenant it vouches for.
            await store.learn_tenant((await verifier.verify(request)).tenant_id)
        return principal
    if verifier is not None and verifier.is_signed(request):
        verified = await verifier.verify(request)
        # This deployment may keep its own database (a split layout): the tenant comes from the signed call.
        await store.learn_tenant(verified.tenant_id)
        return _bind(request, Principal(tenant_id=verified.tenant_id, internal=True, deadline=verified.deadline))
    token = bearer_token(request)
    if token is None:
        raise Unauthenticated("an API key is required: send `Authorization: Bearer <api key>`")
    found = await store.lookup_key(token)
    if found is None:
        raise Unauthenticated("the API key is not valid")
    if found.revoked:
        raise Forbidden("the API key has been revoked: ask your administrator for a new one")
    return _bind(request, Principal(tenant_id=found.tenant_id, key_id=found.key_id))


def _admin(request: Request, settings: Settings) -> Principal:
    if settings.admin_key is None:
        raise Forbidden("the admin API is disabled: set FAAS_ADMIN_KEY to enable it")
    token = bearer_token(request)
    if token is None:
        raise Unauthenticated("the admin API needs `Authorization: Bearer <FAAS_ADMIN_KEY>`")
    if not hmac.compare_digest(token.encode(), settings.admin_key.get().encode()):
        raise Unauthenticated("the admin key is not valid")
    return Principal(tenant_id=None, admin=True)


def _bind(request: Request, principal: Principal) -> Principal:
    request.scope[TENANT_SCOPE_KEY] = principal.tenant_id
    deadline = None if principal.deadline is None else time.monotonic() + principal.deadline
    context.bind(tenant_id=principal.tenant_id, deadline=deadline)
    return principal


def tenant_id(request: Request) -> str:
    """The authenticated tenant of this request (only on routes declared with auth='tenant')."""
    value = request.scope.get(TENANT_SCOPE_KEY)
    if not value:
        raise Unauthenticated("this route needs a tenant API key")
    return str(value)
