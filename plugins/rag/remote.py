"""The rag service over HTTP: the same interface, served by the deployment at FAAS_RAG_URL."""

from __future__ import annotations

from app.remote import RemoteService


class RemoteRagService(RemoteService):
    """`RagService` in remote mode; `describe()` and `ready()` come from `RemoteService`."""
