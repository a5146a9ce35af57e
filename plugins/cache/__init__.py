"""The cache plugin: key/value and LLM-response cache, exact and semantic, per tenant."""

from __future__ import annotations

from app.plugin_kit import direct_factory
from app.plugins import Plugin
from plugins.cache.api import routes
from plugins.cache.service import DirectCacheService

plugin = Plugin(
    name="cache",
    requires=(),
    direct=direct_factory(DirectCacheService),
    routes=routes,
    description="Key/value and LLM-response cache, exact and semantic, per tenant",
)
