"""The ml service over HTTP: the same interface, served by the deployment at FAAS_ML_URL."""

from __future__ import annotations

from app.remote import RemoteService


class RemoteMlService(RemoteService):
    """`MlService` in remote mode; `describe()` and `ready()` come from `RemoteService`."""
