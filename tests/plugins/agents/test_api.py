"""Agents over HTTP, both modes: CRUD with cursor pages and the name filter, the model check, runs that wait for the
answer with `mock-1` (a tool call, then the answer), threads and their history, and tenant isolation."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import Deployer
from tests.plugins.agents.conftest import URL, new_agent


async def test_agent_crud_pages_and_name_filter(deploy_app: Deployer) -> None:
    async with deploy_app() as d:
        _, api = await d.api()
        made = [await new_agent(api, name=f"a{i % 2}", description=f"agent {i}") for i in range(5)]
        first = made[0]
        assert first["agent_id"].startswith("agt_") and first["llm_provider"] == "mock"
        assert first["config"]["max_steps"] == 20 and first["capabilities"] == []
        got = await api.get(f"{URL}/{first['agent_id']}")
        assert got.status_code == 200 and got.json() == first
        seen: list[str] = []
        cursor: str | None = None
        while True:
            r = await api.get(URL, params={"limit": 2, **({"cursor": cursor} if cursor else {})})
            assert r.status_code == 200, r.text
            seen += [a["agent_id"] for a in r.json()["data"]]
            cursor = r.json()["next_cursor"]
            if cursor is None:
                break
        assert seen == [a["agent_id"] for a in made]
        r = await api.get(URL, params={"name": "a1"})
        assert [a["agent_id"] for a in r.json()["data"]] == [made[1]["agent_id"], made[3]["agent_id"]]
        r = await api.patch(f"{URL}/{first['agent_id']}", json={"description": "changed", "config": {"max_steps": 3}})
        assert r.status_code == 200, r.text
        assert (
            r.json()["description"] == "changed" and r.json()["name"] == "a0" and r.json()["config"]["max_steps"] == 3
        )
        assert r.json()["updated_at"] > first["updated_at"]
        assert (await api.delete(f"{URL}/{first['agent_id']}")).status_code == 204
        assert (await api.get(f"{URL}/{first['agent_id']}")).status_code == 404
        assert (await api.delete(f"{URL}/{first['agent_id']}")).status_code == 404


async def test_llm_model_must_be_served_to_the_tenant(deploy_app: Deployer) -> None:
    async with deploy_app() as d:
        tenant, api = await d.api()
        r = await api.post(URL, json={"name": "x", "llm_model": "gpt-nope"})
        assert r.status_code == 422, r.text
        assert "gpt-nope" in r.json()["detail"] and "mock-1" in r.json()["models"]
        agent = await new_agent(api)
        r = await api.patch(f"{URL}/{agent['agent_id']}", json={"llm_model": "gpt-nope"})
        assert r.status_code == 422 and "mock-1" in r.json()["models"]
        # A policy that takes mock-1 away from the tenant: the agent can no longer be created with it.
        r = await d.admin().put(
            f"/api/v1/gateway/tenants/{tenant.tenant_id}/policy", json={"allowed_models": ["nothing"]}
        )
        assert r.status_code == 200, r.text
        r = await api.post(URL, json={"name": "x", "llm_model": "mock-1"})
        assert r.status_code == 422 and "mock-1" not in r.json()["models"]


async def test_bad_input_is_refused(deploy_app: Deployer) -> None:
    async with deploy_app() as d:
        _, api = await d.api()
        for body in (
            {"name": "", "llm_model": "mock-1"},
            {"name": "a\u0000b", "llm_model": "mock-1"},
            {"name": "a", "llm_model": "mock-1", "config": {"max_steps": 10**30}},
            {"name": "a", "llm_model": "mock-1", "capabilities": ["rm_rf"]},
            {"name": "a", "llm_model": "mock-1", "config": {"http_allowlist": ["http://x"]}},
        ):
            r = await api.post(URL, json=body)
            assert r.status_code == 422, (body, r.text)
        agent = await new_agent(api)
        r = await api.post(f"{URL}/{agent['agent_id']}/execute", json={"task": "a\u0000"})
        assert r.status_code == 422
        r = await api.get(URL, params={"cursor": "!!"})
        assert r.status_code == 422
        r = await api.post(
            f"{URL}/{agent['agent_id']}/execute", json={"task": "x"}, headers={"idempotency-key": "x" * 300}
        )
        assert r.status_code in (400, 422)


async def test_execute_runs_a_tool_then_answers(deploy_app: Deployer) -> None:
    async with deploy_app() as d:
        _, api = await d.api()
        r = await api.post("/api/v1/prompts", json={"name": "greet", "template": "Hello {{ who }}!"})
        assert r.status_code == 201, r.text
        agent = await new_agent(api, capabilities=["render_prompt"], system_prompt="Be brief.")
        r = await api.post(f"{URL}/{agent['agent_id']}/execute", json={"task": "greet"})
        assert r.status_code == 200, r.text
        run = r.json()
        assert run["status"] == "completed", run
        kinds = [(s["kind"], s["name"]) for s in run["steps"]]
        assert kinds == [("model", "mock-1"), ("tool", "render_prompt"), ("model", "mock-1")]
        call = run["steps"][1]
        # mock-1 fills the required `name` with the user's text: the prompt named "greet" rendered (strictly, so
        # the missing variable is the tool's error, which the model reads back).
        assert call["arguments"] == {"name": "greet"} and call["tool_call_id"]
        assert "who" in call["result"]["error"]
        assert run["output"].startswith("The tool returned: ") and "who" in run["output"]
        assert run["usage"]["total_tokens"] == sum(s["usage"]["total_tokens"] for s in run["steps"]) > 0
        assert all(s["duration_ms"] >= 0 for s in run["steps"])
        # The run reads back the same; the thread holds the task and the answer.
        got = await api.get(f"{URL}/{agent['agent_id']}/runs/{run['run_id']}")
        assert got.status_code == 200 and got.json() == run
        thread = await _ok(await api.get(f"{URL}/{agent['agent_id']}/threads/{run['thread_id']}"))
        assert [(m["role"], m["content"]) for m in thread["messages"]] == [
            ("user", "greet"),
            ("assistant", run["output"]),
        ]


async def test_chat_continues_a_thread_from_its_history(deploy_app: Deployer, scripted: Any) -> None:
    fake, env = scripted
    async with deploy_app(env=env) as d:
        _, api = await d.api()
        agent = await new_agent(api, llm_model="scripted", system_prompt="You are terse.")
        aid = agent["agent_id"]
        r = await api.post(f"{URL}/{aid}/chat", json={"message": "one"})
        assert r.status_code == 200, r.text
        thread_id = r.json()["thread_id"]
        assert r.json()["output"] == "heard 1 user messages, last: one"
        r = await api.post(f"{URL}/{aid}/chat", json={"message": "two", "thread_id": thread_id})
        assert r.json()["output"] == "heard 2 user messages, last: two" and r.json()["thread_id"] == thread_id
        sent = fake.received[-1]["messages"]
        assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
        assert sent[0]["content"] == "You are terse." and sent[2]["content"] == "heard 1 user messages, last: one"
        # Messages page in order; threads list; an unknown thread is 404.
        r = await api.get(f"{URL}/{aid}/threads/{thread_id}", params={"limit": 3})
        page = r.json()
        assert [m["content"] for m in page["messages"]][:1] == ["one"] and page["message_count"] == 4
        r2 = await api.get(f"{URL}/{aid}/threads/{thread_id}", params={"cursor": page["messages_next_cursor"]})
        assert [m["seq"] for m in r2.json()["messages"]] == [4]
        assert [t["thread_id"] for t in (await api.get(f"{URL}/{aid}/threads")).json()["data"]] == [thread_id]
        r = await api.post(f"{URL}/{aid}/chat", json={"message": "x", "thread_id": "thr_nope"})
        assert r.status_code == 404
        assert (await api.delete(f"{URL}/{aid}/threads/{thread_id}")).status_code == 204
        assert (await api.get(f"{URL}/{aid}/threads/{thread_id}")).status_code == 404


async def test_another_tenants_objects_answer_404_everywhere(deploy_app: Deployer) -> None:
    async with deploy_app() as d:
        _, api = await d.api()
        _, other = await d.api()
        agent = await new_agent(api)
        aid = agent["agent_id"]
        run = (await api.post(f"{URL}/{aid}/execute", json={"task": "hi"})).json()
        tid, rid = run["thread_id"], run["run_id"]
        calls: list[tuple[str, str, dict[str, Any] | None]] = [
            ("GET", f"{URL}/{aid}", None),
            ("PATCH", f"{URL}/{aid}", {"name": "mine"}),
            ("DELETE", f"{URL}/{aid}", None),
            ("POST", f"{URL}/{aid}/execute", {"task": "x"}),
            ("POST", f"{URL}/{aid}/chat", {"message": "x"}),
            ("POST", f"{URL}/{aid}/chat", {"message": "x", "thread_id": tid}),
            ("GET", f"{URL}/{aid}/runs/{rid}", None),
            ("POST", f"{URL}/{aid}/runs/{rid}/cancel", None),
            ("GET", f"{URL}/{aid}/threads", None),
            ("GET", f"{URL}/{aid}/threads/{tid}", None),
            ("DELETE", f"{URL}/{aid}/threads/{tid}", None),
        ]
        for method, path, body in calls:
            r = await other.request(method, path, json=body)
            assert r.status_code == 404, (method, path, r.text)
        assert (await other.get(URL)).json()["data"] == []
        # Own agent, other's thread: still 404.
        mine = await new_agent(other)
        r = await other.post(f"{URL}/{mine['agent_id']}/chat", json={"message": "x", "thread_id": tid})
        assert r.status_code == 404
        # Nothing changed for the owner.
        assert (await api.get(f"{URL}/{aid}")).json() == agent
        assert (await api.get(f"{URL}/{aid}/threads/{tid}")).json()["message_count"] == 2


async def _ok(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


async def test_the_system_prompt_may_be_a_stored_prompt(deploy_app: Deployer, scripted: Any) -> None:
    fake, env = scripted
    async with deploy_app(env=env) as d:
        _, api = await d.api()
        r = await api.post("/api/v1/prompts", json={"name": "persona", "template": "You are {{ who }}."})
        assert r.status_code == 201, r.text
        ref = {"name": "persona", "variables": {"who": "a pirate"}}
        aid = (await new_agent(api, llm_model="scripted", config={"prompt": ref}))["agent_id"]
        run = await _ok(await api.post(f"{URL}/{aid}/execute", json={"task": "ahoy"}))
        assert run["status"] == "completed"
        assert fake.received[-1]["messages"][0] == {"role": "system", "content": "You are a pirate."}
        # A prompt that does not render fails the run with the prompts service's reason.
        ref = {"name": "persona"}
        aid = (await new_agent(api, llm_model="scripted", config={"prompt": ref}))["agent_id"]
        run = await _ok(await api.post(f"{URL}/{aid}/execute", json={"task": "ahoy"}))
        assert run["status"] == "failed" and "who" in run["error"] and run["steps"] == []


async def test_deleting_an_agent_deletes_its_threads_and_runs(deploy_app: Deployer) -> None:
    from plugins.agents.interface import AGENTS
    from plugins.agents.service import DirectAgentsService

    async with deploy_app() as d:
        tenant, api = await d.api()
        aid = (await new_agent(api))["agent_id"]
        run = await _ok(await api.post(f"{URL}/{aid}/chat", json={"message": "hi"}))
        assert (await api.delete(f"{URL}/{aid}")).status_code == 204
        direct = d.direct_service(AGENTS)
        assert isinstance(direct, DirectAgentsService)
        assert await direct.runs.get_run(tenant_id=tenant.tenant_id, run_id=run["run_id"]) is None
        thread = await direct.runs.get_thread(tenant_id=tenant.tenant_id, agent_id=aid, thread_id=run["thread_id"])
        assert thread is None
        assert await direct.runs.list_steps(run_id=run["run_id"]) == []
