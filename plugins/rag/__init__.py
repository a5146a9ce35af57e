"""The rag plugin: collections, chunks, hybrid retrieval and grounded answers."""

from __future__ import annotations

from app.plugin_kit import direct_factory
from app.plugins import Plugin
from app.remote import remote_factory
from plugins.rag.api import routes
from plugins.rag.remote import RemoteRagService
from plugins.rag.service import DirectRagService

plugin = Plugin(
    name="rag",
    requires=("gateway",),
    direct=direct_factory(DirectRagService),
    remote=remote_factory(RemoteRagService),
    routes=routes,
    description="Collections, chunks, hybrid retrieval and grounded answers",
)
