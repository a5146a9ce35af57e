"""The ingestion service's contract: `IngestionService`, the one module another plugin may import (for types).

Its feature methods come with its own issue; until then it has the methods every service has.
"""

from __future__ import annotations

from typing import Protocol

from app.plugin_kit import PluginService
from app.plugins import ServiceKey

__all__ = ["INGESTION", "IngestionService"]


class IngestionService(PluginService, Protocol):
    """What the ingestion plugin offers to endpoints and to other plugins, in either mode:
    documents in, parsed and chunked on durable jobs."""


INGESTION: ServiceKey[IngestionService] = ServiceKey("ingestion")
