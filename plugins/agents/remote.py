"""The agents service over HTTP: the same interface, served by the deployment at FAAS_AGENTS_URL."""

from __future__ import annotations

from app.remote import RemoteService


class RemoteAgentsService(RemoteService):
    """`AgentsService` in remote mode; `describe()` and `ready()` come from `RemoteService`."""
