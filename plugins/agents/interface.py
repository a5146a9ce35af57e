"""The agents service's contract: `AgentsService`, the one module another plugin may import (for types).

Its feature methods come with its own issue; until then it has the methods every service has.
"""

from __future__ import annotations

from typing import Protocol

from app.plugin_kit import PluginService
from app.plugins import ServiceKey

__all__ = ["AGENTS", "AgentsService"]


class AgentsService(PluginService, Protocol):
    """What the agents plugin offers to endpoints and to other plugins, in either mode:
    agent definitions, threads, durable runs and tool calling."""


AGENTS: ServiceKey[AgentsService] = ServiceKey("agents")
