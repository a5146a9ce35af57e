"""The ml service's contract: `MlService`, the one module another plugin may import (for types).

Its feature methods come with its own issue; until then it has the methods every service has.
"""

from __future__ import annotations

from typing import Protocol

from app.plugin_kit import PluginService
from app.plugins import ServiceKey

__all__ = ["ML", "MlService"]


class MlService(PluginService, Protocol):
    """What the ml plugin offers to endpoints and to other plugins, in either mode:
    a model registry, training jobs and predictions."""


ML: ServiceKey[MlService] = ServiceKey("ml")
