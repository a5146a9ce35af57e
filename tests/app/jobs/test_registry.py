"""Job kinds come from the plugins: misnamed ones stop start-up, and only direct plugins' kinds run here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from app.jobs import JobContext
from app.jobs.registry import job_kinds
from app.main import create_app
from app.plugins import Plugin, PluginContext, ServiceKey, StartupError, resolve
from app.settings import Settings


@asynccontextmanager
async def _service(ctx: PluginContext) -> AsyncIterator[Any]:
    yield object()


async def _handler(ctx: JobContext) -> None:
    return None


def fake(name: str, *kinds: str) -> Plugin[Any]:
    key: ServiceKey[Any] = ServiceKey(name)
    return Plugin(key=key, direct=_service, remote=_service, jobs=dict.fromkeys(kinds, _handler))


@pytest.mark.parametrize("kind", ["other.parse", "docs", "docs.", "docs.Parse", "docs." + "x" * 36])
def test_a_misnamed_kind_stops_start_up(kind: str) -> None:
    settings = Settings.from_env({"FAAS_PLUGINS": "docs"})
    with pytest.raises(StartupError, match=r"name it docs\.<name>"):
        create_app(settings, plugins=[fake("docs", kind)])


def test_a_remote_plugins_kinds_are_known_but_not_run_here() -> None:
    settings = Settings.from_env(
        {
            "FAAS_PLUGINS": "docs,ml",
            "FAAS_ML_MODE": "remote",
            "FAAS_ML_URL": "http://ml:8000",
            "FAAS_INTERNAL_SECRET": "s" * 16,
        }
    )
    kinds = job_kinds(resolve(settings, [fake("docs", "docs.parse"), fake("ml", "ml.train")]))
    assert kinds.known == {"docs.parse", "ml.train"}
    assert set(kinds.handlers) == {"docs.parse"}
