"""The ml plugin: model registry, training jobs and predictions."""

from __future__ import annotations

from app.plugin_kit import direct_factory
from app.plugins import Plugin
from plugins.ml.api import routes
from plugins.ml.service import DirectMlService

plugin = Plugin(
    name="ml",
    requires=(),
    direct=direct_factory(DirectMlService),
    routes=routes,
    description="Model registry, training jobs and predictions",
)
