"""The gateway plugin: LLM gateway: chat, generate and embeddings across providers, with routing, fallbacks,
per-tenant limits and a usage ledger; also serves the OpenAI-compatible `/v1/*` paths."""

from __future__ import annotations

from app.plugins import Plugin
from app.remote import remote_factory
from plugins.gateway.api import routes
from plugins.gateway.direct import open_gateway
from plugins.gateway.openai_api import root_routes
from plugins.gateway.remote import RemoteGatewayService

plugin = Plugin(
    name="gateway",
    requires=(),
    direct=open_gateway,
    remote=remote_factory(RemoteGatewayService),
    routes=routes,
    root_routes=root_routes,
    description="LLM gateway: chat, generate and embeddings across providers",
)
