"""The rag plugin: collections, chunks, hybrid retrieval and grounded answers with citations."""

from __future__ import annotations

from app.plugins import Plugin
from plugins.rag.api import routes
from plugins.rag.config import RagConfig
from plugins.rag.interface import RAG, RagService
from plugins.rag.jobs import KIND, index
from plugins.rag.remote import open_remote
from plugins.rag.service import open_direct

plugin: Plugin[RagService] = Plugin(
    key=RAG,
    direct=open_direct,
    remote=open_remote,
    requires=("gateway",),
    config=RagConfig,
    routes=routes,
    jobs={KIND: index},
    description="Collections, chunks, hybrid retrieval and grounded answers with citations",
)
