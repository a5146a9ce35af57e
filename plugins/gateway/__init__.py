"""The gateway plugin: lLM gateway: chat, generate and embeddings across providers."""

from __future__ import annotations

from app.plugin_kit import direct_factory
from app.plugins import Plugin
from plugins.gateway.api import routes
from plugins.gateway.service import DirectGatewayService

plugin = Plugin(
    name="gateway",
    requires=(),
    direct=direct_factory(DirectGatewayService),
    routes=routes,
    description="LLM gateway: chat, generate and embeddings across providers",
)
