"""The ingestion service over HTTP: the same interface, served by the deployment at FAAS_INGESTION_URL."""

from __future__ import annotations

from app.remote import RemoteService


class RemoteIngestionService(RemoteService):
    """`IngestionService` in remote mode; `describe()` and `ready()` come from `RemoteService`."""
