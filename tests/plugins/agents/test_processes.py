"""Two `faas serve` processes on one database, nothing shared but PostgreSQL: an agent created on one answers a chat
on the other, and the thread continues on the first; a process killed (SIGKILL) during a background run leaves the
run to the survivor's worker, which completes it from the last recorded step with no step run twice."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_KEY, INTERNAL_SECRET
from tests.plugins.agents.conftest import URL, script
from tests.plugins.agents.scripted import ScriptedModel
from tests.servers import serve_in_thread
from tests.test_two_process import Served, free_port


@pytest.fixture
def scripted_env(database_url: str, tmp_path: Path) -> Iterator[tuple[ScriptedModel, dict[str, str]]]:
    fake = ScriptedModel()
    with serve_in_thread(fake.app()) as url:
        config = tmp_path / "gateway.json"
        deployment = {"name": "scripted", "provider": "openai", "model": "scripted", "base_url": f"{url}/v1"}
        config.write_text(json.dumps({"models": {"scripted": {"deployments": [deployment]}}}))
        base = {k: v for k, v in os.environ.items() if not k.startswith("FAAS_") and k != "DATABASE_URL"}
        base.update(
            DATABASE_URL=database_url,
            FAAS_INTERNAL_SECRET=INTERNAL_SECRET,
            FAAS_ADMIN_KEY=ADMIN_KEY,
            FAAS_DATA_DIR=str(tmp_path / "var"),
            FAAS_PLUGINS="gateway,agents,prompts",
            FAAS_GATEWAY_CONFIG=str(config),
            FAAS_JOBS_STALLED_SECONDS="2",
        )
        yield fake, base


def _serve(env: dict[str, str], tmp_path: Path, name: str) -> Served:
    served = Served(free_port(), env, tmp_path / f"{name}.log")
    served.wait_ready()
    return served


def _tenant(url: str) -> dict[str, str]:
    r = httpx.post(
        url + "/api/v1/admin/tenants", json={"name": "procs"}, headers={"authorization": f"Bearer {ADMIN_KEY}"}
    )
    assert r.status_code == 201, r.text
    return {"authorization": f"Bearer {r.json()['api_key']}"}


def _ok(r: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert r.status_code == status, r.text
    data: dict[str, Any] = r.json()
    return data


@pytest.mark.slow
def test_create_on_one_chat_on_the_other(scripted_env: tuple[ScriptedModel, dict[str, str]], tmp_path: Path) -> None:
    _, env = scripted_env
    one, two = _serve(env, tmp_path, "one"), _serve(env, tmp_path, "two")
    try:
        auth = _tenant(one.url)
        agent = _ok(httpx.post(one.url + URL, json={"name": "a", "llm_model": "scripted"}, headers=auth), 201)
        aid = agent["agent_id"]
        assert _ok(httpx.get(f"{two.url}{URL}/{aid}", headers=auth)) == agent
        run = _ok(httpx.post(f"{two.url}{URL}/{aid}/chat", json={"message": "first"}, headers=auth, timeout=30))
        assert run["output"] == "heard 1 user messages, last: first"
        body = {"message": "second", "thread_id": run["thread_id"]}
        run = _ok(httpx.post(f"{one.url}{URL}/{aid}/chat", json=body, headers=auth, timeout=30))
        assert run["output"] == "heard 2 user messages, last: second"
        thread = _ok(httpx.get(f"{two.url}{URL}/{aid}/threads/{run['thread_id']}", headers=auth))
        assert [m["content"] for m in thread["messages"]][::2] == ["first", "second"]
    finally:
        one.stop()
        two.stop()


@pytest.mark.slow
def test_a_killed_process_leaves_its_background_run_to_the_survivor(
    scripted_env: tuple[ScriptedModel, dict[str, str]], tmp_path: Path
) -> None:
    fake, env = scripted_env
    one = _serve(env, tmp_path, "one")
    two: Served | None = None
    try:
        auth = _tenant(one.url)
        body = {"name": "a", "llm_model": "scripted", "capabilities": ["render_prompt"]}
        aid = _ok(httpx.post(one.url + URL, json=body, headers=auth), 201)["agent_id"]
        task = script(tool="render_prompt", args={"name": "p"}, times=8, vary=True, delay=0.1)
        run = _ok(
            httpx.post(f"{one.url}{URL}/{aid}/execute", json={"task": task, "background": True}, headers=auth), 202
        )
        path = f"{URL}/{aid}/runs/{run['run_id']}"
        deadline = time.monotonic() + 30
        while len(_ok(httpx.get(one.url + path, headers=auth))["steps"]) < 3:
            assert time.monotonic() < deadline, "the run did not start on the first process"
            time.sleep(0.02)
        fake.going.clear()  # the first process waits in a model call (or soon will)
        two = _serve(env, tmp_path, "two")  # its worker starts only now: the job is the first one's
        before = len(_ok(httpx.get(two.url + path, headers=auth))["steps"])
        assert 3 <= before < 17
        one.proc.kill()  # SIGKILL, the process this test started
        one.proc.wait()
        fake.going.set()
        deadline = time.monotonic() + 60
        while (run := _ok(httpx.get(two.url + path, headers=auth)))["status"] != "completed":
            assert run["status"] == "running" and time.monotonic() < deadline, run
            time.sleep(0.2)
        steps = run["steps"]
        assert [s["seq"] for s in steps] == list(range(17))  # 9 model calls and 8 tool calls, each once
        tool_args = [s["arguments"]["n"] for s in steps if s["kind"] == "tool"]
        assert tool_args == list(range(8))
        assert run["output"].startswith("done after 8 tool calls")
        job = _ok(httpx.get(two.url + "/api/v1/jobs", headers=auth))["data"][0]
        assert job["kind"] == "agents.run" and job["status"] == "succeeded" and job["attempts"] >= 2
    finally:
        fake.going.set()
        one.stop()
        if two is not None:
            two.stop()
