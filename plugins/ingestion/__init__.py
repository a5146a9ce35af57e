"""The ingestion plugin: documents in (upload or URL), parsed and chunked on durable jobs, handed to rag."""

from __future__ import annotations

from app.plugins import Plugin
from plugins.ingestion.api import routes
from plugins.ingestion.config import IngestionConfig
from plugins.ingestion.interface import INGESTION, IngestionService
from plugins.ingestion.jobs import ingest
from plugins.ingestion.remote import open_remote
from plugins.ingestion.service import KIND, open_direct

plugin: Plugin[IngestionService] = Plugin(
    key=INGESTION,
    direct=open_direct,
    remote=open_remote,
    requires=("rag", "gateway"),
    config=IngestionConfig,
    routes=routes,
    jobs={KIND: ingest},
    description="Documents in (upload or URL), parsed and chunked on durable jobs, handed to rag",
)
