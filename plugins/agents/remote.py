"""`AgentsService` over HTTP: the same routes and schemas, served by the deployment at FAAS_AGENTS_URL."""

from __future__ import annotations

from app.remote import RemoteService, remote_factory


class RemoteAgentsService(RemoteService):
    """No feature methods yet: `describe` and `ready` come from `RemoteService`."""


open_remote = remote_factory(RemoteAgentsService)
