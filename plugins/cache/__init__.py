"""The cache plugin: key/value and LLM-response cache, exact and semantic, per tenant."""

from __future__ import annotations

from app.plugins import Plugin
from app.remote import remote_factory
from plugins.cache.api import routes
from plugins.cache.remote import RemoteCacheService
from plugins.cache.service import open_direct

plugin = Plugin(
    name="cache",
    # The semantic path calls the gateway, looked up at call time: declaring it here would make a cycle
    # (the gateway requires cache).
    requires=(),
    direct=open_direct,
    remote=remote_factory(RemoteCacheService),
    routes=routes,
    description="Key/value and LLM-response cache, exact and semantic, per tenant",
)
