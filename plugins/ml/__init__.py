"""The ml plugin: model registry, training jobs and predictions (Open Inference Protocol)."""

from __future__ import annotations

from app.plugins import Plugin
from plugins.ml.api import routes
from plugins.ml.interface import ML, MlService
from plugins.ml.remote import open_remote
from plugins.ml.service import open_direct

plugin: Plugin[MlService] = Plugin(
    key=ML,
    direct=open_direct,
    remote=open_remote,
    routes=routes,
    description="Model registry, training jobs and predictions (Open Inference Protocol)",
)
