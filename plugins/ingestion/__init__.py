"""The ingestion plugin: documents in, parsed, chunked and handed to rag."""

from __future__ import annotations

from app.plugin_kit import direct_factory
from app.plugins import Plugin
from app.remote import remote_factory
from plugins.ingestion.api import routes
from plugins.ingestion.remote import RemoteIngestionService
from plugins.ingestion.service import DirectIngestionService

plugin = Plugin(
    name="ingestion",
    requires=("rag",),
    direct=direct_factory(DirectIngestionService),
    remote=remote_factory(RemoteIngestionService),
    routes=routes,
    description="Documents in, parsed, chunked and handed to rag",
)
