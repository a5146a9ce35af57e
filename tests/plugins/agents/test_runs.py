"""Runs under their limits, both modes, with the scripted model: each limit stops a runaway tool loop with its
reason recorded; one active run per thread (409); Idempotency-Key; streaming events; background runs (202) polled
and cancelled on the core queue's worker."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from tests.conftest import Deployer, eventually
from tests.plugins.agents.conftest import URL, new_agent, script

LOOP = {"tool": "render_prompt", "args": {"name": "nothing"}, "times": 1000}


async def _run(api: httpx.AsyncClient, agent_id: str, task: str, **extra: Any) -> dict[str, Any]:
    r = await api.post(f"{URL}/{agent_id}/execute", json={"task": task, **extra})
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def _tools(run: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in run["steps"] if s["kind"] == "tool"]


async def test_each_limit_stops_a_runaway_loop(deploy_app: Deployer, scripted: Any) -> None:
    _, env = scripted
    async with deploy_app(env=env) as d:
        _, api = await d.api()

        async def agent(**config: Any) -> str:
            made = await new_agent(api, llm_model="scripted", capabilities=["render_prompt"], config=config)
            return str(made["agent_id"])

        run = await _run(api, await agent(max_steps=5, max_tool_calls=100), script(**LOOP, vary=True))
        assert (run["status"], run["stop_reason"]) == ("stopped", "max_steps")
        assert len(run["steps"]) == 5 and [s["seq"] for s in run["steps"]] == [0, 1, 2, 3, 4]

        run = await _run(api, await agent(max_steps=50, max_tool_calls=2), script(**LOOP, vary=True))
        assert (run["status"], run["stop_reason"]) == ("stopped", "max_tool_calls") and len(_tools(run)) == 2

        run = await _run(api, await agent(max_tokens=5000), script(**LOOP, vary=True, tokens=[1000, 1000]))
        assert (run["status"], run["stop_reason"]) == ("stopped", "max_tokens")
        assert [s["kind"] for s in run["steps"]].count("model") == 3 and run["usage"]["total_tokens"] == 6000

        run = await _run(api, await agent(), script(**LOOP))
        assert (run["status"], run["stop_reason"]) == ("stopped", "repeated_tool_call")
        assert len(_tools(run)) == 2 and _tools(run)[0]["arguments"] == _tools(run)[1]["arguments"]

        started = asyncio.get_running_loop().time()
        run = await _run(api, await agent(max_seconds=1, max_steps=200), script(**LOOP, vary=True, delay=0.3))
        assert (run["status"], run["stop_reason"]) == ("stopped", "max_seconds")
        assert asyncio.get_running_loop().time() - started < 5 and 1 <= len(run["steps"]) <= 6
        # Nothing was answered, so the thread holds only the task.
        thread = (await api.get(f"{URL}/{run['agent_id']}/threads/{run['thread_id']}")).json()
        assert [m["role"] for m in thread["messages"]] == ["user"]


async def test_one_active_run_per_thread(deploy_app: Deployer, scripted: Any) -> None:
    _, env = scripted
    async with deploy_app(env=env) as d:
        _, api = await d.api()
        aid = (await new_agent(api, llm_model="scripted"))["agent_id"]
        first = await api.post(f"{URL}/{aid}/chat", json={"message": "hello"})
        thread_id = first.json()["thread_id"]
        slow = asyncio.create_task(
            api.post(f"{URL}/{aid}/chat", json={"message": script(answer="slow", delay=1.0), "thread_id": thread_id})
        )
        await asyncio.sleep(0.4)
        r = await api.post(f"{URL}/{aid}/chat", json={"message": "me too", "thread_id": thread_id})
        assert r.status_code == 409, r.text
        assert r.json()["thread_id"] == thread_id
        r = await api.delete(f"{URL}/{aid}/threads/{thread_id}")
        assert r.status_code == 409
        done = await slow
        assert done.status_code == 200 and done.json()["output"] == "slow"
        # Once it ended, the thread takes the next message.
        r = await api.post(f"{URL}/{aid}/chat", json={"message": "now", "thread_id": thread_id})
        assert r.status_code == 200 and r.json()["output"] == "heard 3 user messages, last: now"


async def test_idempotency_key_returns_the_same_run(deploy_app: Deployer, scripted: Any) -> None:
    fake, env = scripted
    async with deploy_app(env=env) as d:
        _, api = await d.api()
        aid = (await new_agent(api, llm_model="scripted"))["agent_id"]
        key = {"idempotency-key": "order-42"}
        both = await asyncio.gather(
            api.post(f"{URL}/{aid}/execute", json={"task": script(answer="once", delay=0.3)}, headers=key),
            api.post(f"{URL}/{aid}/execute", json={"task": script(answer="once", delay=0.3)}, headers=key),
        )
        assert [r.status_code for r in both] == [200, 200], [r.text for r in both]
        assert both[0].json()["run_id"] == both[1].json()["run_id"]
        assert both[1].json()["output"] == "once" and both[1].json()["status"] == "completed"
        assert len(fake.received) == 1
        first = both[0].json()
        # The same request streamed (a client whose stream broke, asking again) gets the same run, not a second.
        streamed = await api.post(
            f"{URL}/{aid}/execute", json={"task": script(answer="once", delay=0.3), "stream": True}, headers=key
        )
        assert streamed.status_code == 200 and f'"run_id":"{first["run_id"]}"' in streamed.text.replace(" ", "")
        assert len(fake.received) == 1
        # The same key for another request is refused, whatever differs: the text, the route, the mode, the thread.
        for route, body in [
            ("execute", {"task": "other"}),
            ("chat", {"message": script(answer="once", delay=0.3)}),
            ("execute", {"task": script(answer="once", delay=0.3), "background": True}),
            ("chat", {"message": script(answer="once", delay=0.3), "thread_id": first["thread_id"]}),
        ]:
            again = await api.post(f"{URL}/{aid}/{route}", json=body, headers=key)
            assert again.status_code == 422, (route, body, again.text)
            problem = again.json()
            assert "Idempotency-Key" in problem["detail"] and problem["run_id"] == first["run_id"], problem
        assert len(fake.received) == 1
        other = await api.post(f"{URL}/{aid}/execute", json={"task": "other"}, headers={"idempotency-key": "order-43"})
        assert other.json()["run_id"] != first["run_id"]


def _events(text: str) -> list[tuple[str, Any]]:
    out = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        out.append((lines["event"], json.loads(lines["data"])))
    return out


async def test_stream_sends_tokens_tool_calls_results_and_the_run(deploy_app: Deployer, scripted: Any) -> None:
    _, env = scripted
    async with deploy_app(env=env) as d:
        _, api = await d.api()
        aid = (await new_agent(api, llm_model="scripted", capabilities=["render_prompt"]))["agent_id"]
        task = script(tool="render_prompt", args={"name": "p"}, times=1, answer="all done now")
        r = await api.post(f"{URL}/{aid}/execute", json={"task": task, "stream": True})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = _events(r.text)
        names = [e for e, _ in events]
        assert names[0] == "run" and names[-1] == "done"
        assert names.index("tool_call") < names.index("tool_result") < names.index("token")
        call = dict(events)["tool_call"]
        assert call["name"] == "render_prompt" and call["arguments"] == {"name": "p"}
        assert "does not exist" in dict(events)["tool_result"]["result"]["error"]
        assert "".join(data["text"] for e, data in events if e == "token") == "all done now"
        final = events[-1][1]
        assert final["status"] == "completed" and final["output"] == "all done now" and len(final["steps"]) == 3
        assert (await api.get(f"{URL}/{aid}/runs/{final['run_id']}")).json() == final


async def test_background_run_is_polled_and_cancelled(deploy_app: Deployer, scripted: Any) -> None:
    _, env = scripted
    async with deploy_app(env={**env, "FAAS_JOBS_WORKER": "on"}) as d:
        _, api = await d.api()
        aid = (await new_agent(api, llm_model="scripted", capabilities=["render_prompt"]))["agent_id"]
        task = script(tool="render_prompt", args={"name": "p"}, times=2, vary=True)
        r = await api.post(f"{URL}/{aid}/execute", json={"task": task, "background": True})
        assert r.status_code == 202, r.text
        assert r.json()["status"] == "queued" and r.json()["steps"] == [] and r.json()["job_id"].startswith("job_")
        rid = r.json()["run_id"]

        async def finished() -> dict[str, Any]:
            run = (await api.get(f"{URL}/{aid}/runs/{rid}")).json()
            assert run["status"] == "completed", run
            return dict(run)

        run = await eventually(finished, within=60)
        assert run["output"].startswith("done after 2 tool calls") and len(run["steps"]) == 5

        async def job_done() -> dict[str, Any]:
            job = (await api.get(f"/api/v1/jobs/{run['job_id']}")).json()
            assert job["status"] == "succeeded", job
            return dict(job)

        job = await eventually(job_done, within=30)
        assert job["kind"] == "agents.run" and job["stage"] == "5 steps recorded"
        assert job["result"] == {"run_id": rid, "status": "completed"}
        assert (await api.post(f"{URL}/{aid}/runs/{rid}/cancel")).status_code == 409

        slow = script(**LOOP, vary=True, delay=0.3)
        r = await api.post(f"{URL}/{aid}/chat", json={"message": slow, "background": True})
        rid, thread_id = r.json()["run_id"], r.json()["thread_id"]

        async def running() -> None:
            run = (await api.get(f"{URL}/{aid}/runs/{rid}")).json()
            assert run["status"] == "running" and len(run["steps"]) >= 1, run

        await eventually(running, within=60)
        r = await api.post(f"{URL}/{aid}/runs/{rid}/cancel")
        assert r.status_code == 200, r.text

        async def cancelled() -> dict[str, Any]:
            run = (await api.get(f"{URL}/{aid}/runs/{rid}")).json()
            assert run["status"] == "cancelled", run
            return dict(run)

        run = await eventually(cancelled, within=30)
        assert run["stop_reason"] == "cancelled" and len(run["steps"]) < 20

        async def job_cancelled() -> None:
            # Cancelled at its next await, or (when the loop saw the request first, at a step) ended by itself.
            job = (await api.get(f"/api/v1/jobs/{run['job_id']}")).json()
            assert job["status"] == "cancelled" or job["result"] == {"run_id": rid, "status": "cancelled"}, job

        await eventually(job_cancelled, within=30)
        r = await api.post(f"{URL}/{aid}/chat", json={"message": "again", "thread_id": thread_id})
        assert r.status_code == 200, r.text


async def test_runs_through_a_remote_gateway(deploy_app: Deployer, scripted: Any) -> None:
    """Remote mode here runs the agents direct on the front and the gateway on the serving deployment: the loop,
    streaming included, reaches the model over signed HTTP through the gateway's remote interface."""
    fake, env = scripted
    async with deploy_app(env=env, remote=("gateway",)) as d:
        _, api = await d.api()
        aid = (await new_agent(api, llm_model="scripted", capabilities=["render_prompt"]))["agent_id"]
        task = script(tool="render_prompt", args={"name": "p"}, times=2, vary=True, answer="fine")
        run = await _run(api, aid, task)
        assert run["status"] == "completed" and run["output"] == "fine" and len(run["steps"]) == 5
        r = await api.post(f"{URL}/{aid}/chat", json={"message": task, "stream": True})
        events = _events(r.text)
        assert [e for e, _ in events].count("tool_result") == 2 and events[-1][1]["output"] == "fine"
        assert all(b.get("stream") for b in fake.received[-3:])
        r = await api.post(URL, json={"name": "x", "llm_model": "nope"})
        assert r.status_code == 422 and {"mock-1", "scripted"} <= set(r.json()["models"])


async def test_nul_characters_from_the_model_are_recorded_not_a_failure(deploy_app: Deployer, scripted: Any) -> None:
    _, env = scripted
    async with deploy_app(env=env) as d:
        _, api = await d.api()
        aid = (await new_agent(api, llm_model="scripted", capabilities=["render_prompt"]))["agent_id"]
        task = script(tool="render_prompt", args={"name": "a\u0000b"}, answer="x\u0000y")
        run = await _run(api, aid, task)
        assert run["status"] == "completed" and run["output"] == "x\ufffdy", run
        assert run["steps"][1]["arguments"] == {"name": "a\ufffdb"}
