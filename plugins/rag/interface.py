"""The rag service's contract: `RagService`, the one module another plugin may import (for types).

Its feature methods come with its own issue; until then it has the methods every service has.
"""

from __future__ import annotations

from typing import Protocol

from app.plugin_kit import PluginService
from app.plugins import ServiceKey

__all__ = ["RAG", "RagService"]


class RagService(PluginService, Protocol):
    """What the rag plugin offers to endpoints and to other plugins, in either mode:
    collections, chunks, hybrid retrieval and grounded answers."""


RAG: ServiceKey[RagService] = ServiceKey("rag")
