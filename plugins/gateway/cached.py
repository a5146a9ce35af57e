"""The gateway's use of the cache plugin's response cache, when a request asks for it (`"cache": {...}`).

The cache is an optimisation: when the cache plugin is absent, lacks the response-cache methods, or fails,
the call simply goes upstream (the failure is logged). A hit is marked `"cached": true` in the response.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("faas.gateway.cache")


def _cache(services: Any, method: str) -> Any:
    cache = services.get("cache") if services is not None else None
    return getattr(cache, method, None)


async def lookup(
    services: Any, *, tenant_id: str, body: dict[str, Any], options: dict[str, Any]
) -> dict[str, Any] | None:
    find = _cache(services, "lookup_response")
    if find is None:
        return None
    try:
        hit = await find(
            tenant_id=tenant_id,
            request=body,
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
    similarity = getattr(hit, "similarity", None)
    if similarity is not None:
        response["cache_similarity"] = similarity
    return response


async def store(
    services: Any, *, tenant_id: str, body: dict[str, Any], response: dict[str, Any], options: dict[str, Any]
) -> None:
    put = _cache(services, "store_response")
    if put is None:
        return
    try:
        # Said outright, not left to the cache to infer from a recent lookup: the lookup may have been served by
        # another cache replica.
        await put(
            tenant_id=tenant_id,
            request=body,
            response=response,
            ttl_seconds=int(options.get("ttl_seconds") or 3600),
            semantic=options.get("mode") == "semantic",
        )
    except Exception:
        log.warning("storing the response in the cache failed", exc_info=True)
