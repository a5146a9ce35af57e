"""The agents plugin: agent definitions, threads, runs and tool calling."""

from __future__ import annotations

from app.plugins import Plugin
from plugins.agents.api import routes
from plugins.agents.config import AgentsConfig
from plugins.agents.interface import AGENTS, AgentsService
from plugins.agents.jobs import KIND, run
from plugins.agents.remote import open_remote
from plugins.agents.service import open_direct

plugin: Plugin[AgentsService] = Plugin(
    key=AGENTS,
    direct=open_direct,
    remote=open_remote,
    requires=("gateway",),
    uses=("prompts", "rag", "ml"),
    config=AgentsConfig,
    routes=routes,
    jobs={KIND: run},
    description="Agent definitions, threads, runs and tool calling",
)
