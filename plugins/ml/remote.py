"""`MlService` over HTTP: the same routes and schemas, served by the deployment at FAAS_ML_URL."""

from __future__ import annotations

from app.remote import RemoteService, remote_factory


class RemoteMlService(RemoteService):
    """No feature methods yet: `describe` and `ready` come from `RemoteService`."""


open_remote = remote_factory(RemoteMlService)
