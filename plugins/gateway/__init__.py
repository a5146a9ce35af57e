"""The gateway plugin: LLM gateway: chat, generate and embeddings across providers, with routing, fallbacks,
per-tenant limits and a usage ledger; also serves the OpenAI-compatible `/v1/*` paths."""

from __future__ import annotations

from app.plugins import Plugin
from plugins.gateway.api import routes
from plugins.gateway.config import GatewayConfig
from plugins.gateway.interface import GATEWAY, GatewayService
from plugins.gateway.openai_api import root_routes
from plugins.gateway.remote import open_remote
from plugins.gateway.service import open_direct

plugin: Plugin[GatewayService] = Plugin(
    key=GATEWAY,
    direct=open_direct,
    remote=open_remote,
    # The response cache (a request's `"cache": {...}`), looked up at call time: the cache uses the gateway too.
    uses=("cache",),
    config=GatewayConfig,
    routes=routes,
    root_routes=root_routes,
    description="LLM gateway: chat, generate and embeddings across providers",
)
