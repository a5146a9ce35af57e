"""The gateway's use of the cache plugin's response cache, when a request asks for it (`"cache": {...}`).

The cache is an optional dependency (`uses`): when it is not open here, or fails, the call simply goes upstream
(the failure is logged). A hit is marked `"cached": true` in the response.
"""

from __future__ import annotations

import logging
from typing import Any

from app.plugins import Services
from plugins.cache.interface import CACHE

log = logging.getLogger("faas.gateway.cache")


def _keyed(body: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """The request as the cache keys it: with `user` (one end user's answers) unless `per_user` is false."""
    if options.get("per_user", True) or "user" not in body:
        return body
    return {k: v for k, v in body.items() if k != "user"}


async def lookup(
    services: Services, *, tenant_id: str, body: dict[str, Any], options: dict[str, Any]
) -> dict[str, Any] | None:
    cache = services.optional(CACHE)
    if cache is None:
        return None
    try:
        hit = await cache.lookup_response(
            tenant_id=tenant_id,
            request=_keyed(body, options),
            semantic=options.get("mode") == "semantic",
            threshold=options.get("threshold"),
        )
    except Exception:
        log.warning("cache lookup failed; calling the provider", exc_info=True)
        return None
    if hit is None:
        return None
    response = dict(hit.response)
    response["cached"] = True
    if hit.similarity is not None:
        response["cache_similarity"] = hit.similarity
    return response


async def store(
    services: Services, *, tenant_id: str, body: dict[str, Any], response: dict[str, Any], options: dict[str, Any]
) -> None:
    cache = services.optional(CACHE)
    if cache is None:
        return
    try:
        # Said outright, not left to the cache to infer from a recent lookup: the lookup may have been served by
        # another cache replica.
        await cache.store_response(
            tenant_id=tenant_id,
            request=_keyed(body, options),
            response=response,
            ttl_seconds=int(options.get("ttl_seconds") or 3600),
            semantic=options.get("mode") == "semantic",
        )
    except Exception:
        log.warning("storing the response in the cache failed", exc_info=True)
