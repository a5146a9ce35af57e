"""Agents fixtures: the agents plugin with the gateway it requires (the `mock-1` model) and the prompts plugin
(a tool), direct and remote (the root conftest's `mode`; in remote mode the agents plugin runs on the serving
deployment). `scripted_model` points a gateway model at a scripted OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.plugins.agents.scripted import ScriptedModel
from tests.servers import serve_in_thread

URL = "/api/v1/agents"


@pytest.fixture
def deploy_plugins() -> tuple[str, ...]:
    return ("gateway", "agents", "prompts")


@pytest.fixture
def deploy_remote() -> tuple[str, ...]:
    return ("agents",)


@pytest.fixture
def scripted(tmp_path: Path) -> Iterator[tuple[ScriptedModel, dict[str, str]]]:
    """A scripted model server and the env that makes it the gateway's `scripted` model (mock-1 stays)."""
    fake = ScriptedModel()
    with serve_in_thread(fake.app()) as url:
        config = tmp_path / "gateway.json"
        deployment = {"name": "scripted", "provider": "openai", "model": "scripted", "base_url": f"{url}/v1"}
        models = {"scripted": {"deployments": [deployment]}}
        config.write_text(json.dumps({"models": models}))
        yield fake, {"FAAS_GATEWAY_CONFIG": str(config)}


async def new_agent(api: httpx.AsyncClient, **extra: Any) -> dict[str, Any]:
    body = {"name": "helper", "llm_model": "mock-1", **extra}
    r = await api.post(URL, json=body)
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


def script(**steps: Any) -> str:
    """A task the scripted model follows (see scripted.py)."""
    return json.dumps(steps)
