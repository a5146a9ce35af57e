"""Built-in tools, both modes: offered only when their plugin is here; `rag_search` against a real collection;
`http_request` only to allowlisted hosts on public addresses, checked after DNS and on every redirect."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from plugins.agents.netguard import HttpGuard, host_allowed
from tests.conftest import Deployer
from tests.plugins.agents.conftest import URL, new_agent, script
from tests.plugins.rag.test_api import ANIMALS
from tests.servers import serve_in_thread

ALL = ["rag_search", "render_prompt", "ml_predict", "http_request"]


def _offered(body: dict[str, Any]) -> list[str]:
    return [t["function"]["name"] for t in body.get("tools") or []]


async def test_tools_are_offered_only_when_their_plugin_is_here(deploy_app: Deployer, scripted: Any) -> None:
    fake, env = scripted
    async with deploy_app(plugins=("gateway", "agents"), env=env) as d:
        _, api = await d.api()
        aid = (await new_agent(api, llm_model="scripted", capabilities=ALL))["agent_id"]
        r = await api.post(f"{URL}/{aid}/execute", json={"task": "hi"})
        assert r.json()["status"] == "completed" and _offered(fake.received[-1]) == []
        # A tool the model invents is refused as a result the model reads, not run.
        r = await api.post(f"{URL}/{aid}/execute", json={"task": script(tool="ml_predict", args={"model": "m"})})
        run = r.json()
        assert run["status"] == "completed" and "no tool named 'ml_predict'" in run["steps"][1]["result"]["error"]
    async with deploy_app(plugins=("gateway", "agents", "rag", "prompts", "ml"), env=env) as d:
        _, api = await d.api()
        config = {"http_allowlist": ["example.com"]}
        aid = (await new_agent(api, llm_model="scripted", capabilities=ALL, config=config))["agent_id"]
        await api.post(f"{URL}/{aid}/execute", json={"task": "hi"})
        assert _offered(fake.received[-1]) == ALL


async def test_rag_search_finds_the_passage(deploy_app: Deployer, scripted: Any) -> None:
    _, env = scripted
    async with deploy_app(plugins=("gateway", "agents", "rag"), env=env) as d:
        _, api = await d.api()
        r = await api.post("/api/v1/rag/collections", json={"name": "animals"})
        coll = r.json()["id"]
        assert (await api.post(f"/api/v1/rag/collections/{coll}/documents", json=ANIMALS)).status_code == 201
        aid = (await new_agent(api, llm_model="scripted", capabilities=["rag_search"]))["agent_id"]
        task = script(tool="rag_search", args={"collection_id": coll, "query": "humps desert fat", "top_k": 2})
        run = (await api.post(f"{URL}/{aid}/execute", json={"task": task})).json()
        assert run["status"] == "completed", run
        hits = run["steps"][1]["result"]["hits"]
        assert hits[0]["document_id"] == "camel" and len(hits) == 2
        assert "camel" in run["output"]
        # Another tenant's agent cannot search this collection.
        _, other = await d.api()
        aid = (await new_agent(other, llm_model="scripted", capabilities=["rag_search"]))["agent_id"]
        run = (await other.post(f"{URL}/{aid}/execute", json={"task": task})).json()
        assert "does not exist" in run["steps"][1]["result"]["error"]


@pytest.fixture
def site() -> Iterator[str]:
    async def pong(request: Request) -> Response:
        return PlainTextResponse(f"pong from {request.headers['host']}")

    async def to_metadata(request: Request) -> Response:
        return RedirectResponse("http://169.254.169.254/latest/meta-data/", status_code=302)

    async def to_private(request: Request) -> Response:
        return RedirectResponse("http://10.1.2.3/admin", status_code=307)

    async def hop(request: Request) -> Response:
        return RedirectResponse("/pong", status_code=301)

    routes = [Route("/pong", pong), Route("/meta", to_metadata), Route("/private", to_private), Route("/hop", hop)]
    with serve_in_thread(Starlette(routes=routes)) as url:
        yield url


async def test_http_request_refuses_private_addresses(deploy_app: Deployer, scripted: Any, site: str) -> None:
    _, env = scripted
    port = site.rsplit(":", 1)[1]
    allow = ["localhost", "169.254.169.254", "10.1.2.3"]

    async def fetch(api: Any, aid: str, url: str) -> dict[str, Any]:
        task = script(tool="http_request", args={"url": url})
        run = (await api.post(f"{URL}/{aid}/execute", json={"task": task})).json()
        assert run["status"] == "completed", run
        result: dict[str, Any] = run["steps"][1]["result"]
        return result

    async with deploy_app(env=env) as d:
        _, api = await d.api()
        made = await new_agent(
            api, llm_model="scripted", capabilities=["http_request"], config={"http_allowlist": allow}
        )
        aid = made["agent_id"]
        # localhost resolves to a loopback address: refused after DNS.
        assert "private or reserved" in (await fetch(api, aid, f"http://localhost:{port}/pong"))["error"]
        assert "not on this agent's http_allowlist" in (await fetch(api, aid, "http://example.org/"))["error"]
        assert "only http and https" in (await fetch(api, aid, "file:///etc/passwd"))["error"]
    # The operator opens the loopback network: the page is fetched, and still every redirect is checked.
    async with deploy_app(env={**env, "FAAS_AGENTS_HTTP_ALLOW_NETWORKS": "127.0.0.0/8"}) as d:
        _, api = await d.api()
        made = await new_agent(
            api, llm_model="scripted", capabilities=["http_request"], config={"http_allowlist": allow}
        )
        aid = made["agent_id"]
        got = await fetch(api, aid, f"http://localhost:{port}/hop")
        assert got["status"] == 200 and got["body"] == f"pong from localhost:{port}"
        assert "169.254.169.254" in (await fetch(api, aid, f"http://localhost:{port}/meta"))["error"]
        assert "10.1.2.3" in (await fetch(api, aid, f"http://localhost:{port}/private"))["error"]


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("::ffff:127.0.0.1", False),
        ("fd00:ec2::254", False),
        ("fe80::1", False),
    ],
)
def test_guard_allows_only_public_addresses(address: str, allowed: bool) -> None:
    assert HttpGuard().address_allowed(ipaddress.ip_address(address)) is allowed


def test_metadata_stays_refused_when_its_network_is_opened() -> None:
    guard = HttpGuard(allow_networks=[ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("10.0.0.0/8")])
    assert guard.address_allowed(ipaddress.ip_address("10.9.9.9"))
    assert not guard.address_allowed(ipaddress.ip_address("169.254.169.254"))


def test_allowlist_matches_hosts_and_subdomains() -> None:
    assert host_allowed("api.example.com", ["*.example.com"]) and host_allowed("Example.COM.", ["example.com"])
    assert not host_allowed("example.com", ["*.example.com"]) and not host_allowed("evilexample.com", ["*.example.com"])
    assert not host_allowed("example.com.evil.org", ["example.com"])


async def test_ml_predict_uses_a_trained_model(deploy_app: Deployer, scripted: Any) -> None:
    from tests.plugins.ml.conftest import iris_rows, train, without

    _, env = scripted
    env = {**env, "FAAS_JOBS_WORKER": "on", "FAAS_JOBS_SHUTDOWN_SECONDS": "1"}
    async with deploy_app(plugins=("gateway", "agents", "ml"), env=env) as d:
        _, api = await d.api()
        body = {"rows": iris_rows(), "target": "species", "task": "classification", "estimator": "logistic_regression"}
        job = await train(api, "iris", **body)
        assert job["status"] == "succeeded", job
        aid = (await new_agent(api, llm_model="scripted", capabilities=["ml_predict"]))["agent_id"]
        rows = without(iris_rows()[:1] + iris_rows()[-1:], "species")
        task = script(tool="ml_predict", args={"model": "iris", "rows": rows})
        run = (await api.post(f"{URL}/{aid}/execute", json={"task": task})).json()
        assert run["status"] == "completed", run
        assert run["steps"][1]["result"]["predictions"] == ["setosa", "virginica"]
