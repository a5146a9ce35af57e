"""`IngestionService` over HTTP: the same routes and schemas, served by the deployment at FAAS_INGESTION_URL."""

from __future__ import annotations

from app.plugin_kit import PluginInfo, Readiness
from app.remote import PluginClient, remote_factory


class RemoteIngestionService:
    def __init__(self, client: PluginClient) -> None:
        self._client = client

    async def describe(self) -> PluginInfo:
        return await self._client.describe()

    async def ready(self) -> Readiness:
        return await self._client.ready()


open_remote = remote_factory(RemoteIngestionService)
