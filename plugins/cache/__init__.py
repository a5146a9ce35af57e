"""The cache plugin: key/value and LLM-response cache, exact and semantic, per tenant."""

from __future__ import annotations

from app.plugins import Plugin
from plugins.cache.api import routes
from plugins.cache.config import CacheConfig
from plugins.cache.interface import CACHE, CacheService
from plugins.cache.remote import open_remote
from plugins.cache.service import open_direct

plugin: Plugin[CacheService] = Plugin(
    key=CACHE,
    direct=open_direct,
    remote=open_remote,
    # The semantic cache embeds through the gateway, looked up at call time (the gateway uses this plugin too).
    uses=("gateway",),
    config=CacheConfig,
    routes=routes,
    description="Key/value and LLM-response cache, exact and semantic, per tenant",
)
