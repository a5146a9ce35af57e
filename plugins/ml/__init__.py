"""The ml plugin: model registry, training jobs and predictions."""

from __future__ import annotations

from app.plugin_kit import direct_factory
from app.plugins import Plugin
from app.remote import remote_factory
from plugins.ml.api import routes
from plugins.ml.remote import RemoteMlService
from plugins.ml.service import DirectMlService

plugin = Plugin(
    name="ml",
    requires=(),
    direct=direct_factory(DirectMlService),
    remote=remote_factory(RemoteMlService),
    routes=routes,
    description="Model registry, training jobs and predictions",
)
