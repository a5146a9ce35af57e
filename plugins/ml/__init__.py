"""The ml plugin: model registry, training jobs and predictions (JSON, and the Open Inference Protocol at /v2).

Models are trained from a tenant's data by a job on the core queue (`ml.train`), stored as immutable versions whose
artifact is an ONNX file (no pickle anywhere), and served by onnxruntime on any replica.
"""

from __future__ import annotations

from app.plugins import Plugin
from plugins.ml.api import routes
from plugins.ml.config import MlConfig
from plugins.ml.interface import ML, MlService
from plugins.ml.jobs import train
from plugins.ml.remote import open_remote
from plugins.ml.service import TRAIN_KIND, open_direct
from plugins.ml.v2 import root_routes

plugin: Plugin[MlService] = Plugin(
    key=ML,
    direct=open_direct,
    remote=open_remote,
    config=MlConfig,
    routes=routes,
    root_routes=root_routes,
    jobs={TRAIN_KIND: train},
    description="Model registry, training jobs and predictions (Open Inference Protocol)",
)
