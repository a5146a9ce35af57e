"""The agents plugin: agent definitions, threads, runs and tool calling."""

from __future__ import annotations

from app.plugin_kit import direct_factory
from app.plugins import Plugin
from app.remote import remote_factory
from plugins.agents.api import routes
from plugins.agents.remote import RemoteAgentsService
from plugins.agents.service import DirectAgentsService

plugin = Plugin(
    name="agents",
    requires=(
        "gateway",
        "prompts",
        "rag",
        "ml",
    ),
    direct=direct_factory(DirectAgentsService),
    remote=remote_factory(RemoteAgentsService),
    routes=routes,
    description="Agent definitions, threads, runs and tool calling",
)
