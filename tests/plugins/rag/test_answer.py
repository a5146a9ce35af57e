"""Grounded answers: retrieve, generate through the gateway (`mock-1`, which echoes its prompt), and cite only
passages that were retrieved; JSON and server-sent events (over a real socket), in both modes."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.conftest import Deployer
from tests.plugins.rag.conftest import URL, add, new_collection
from tests.plugins.rag.test_api import ANIMALS


async def test_an_answer_cites_only_retrieved_passages(api: httpx.AsyncClient) -> None:
    coll = (await new_collection(api))["id"]
    await add(api, coll, [*ANIMALS[:4], {"id": "atlas", "text": "Antarctic penguins, page two.", "page": 2}])
    # The question itself carries markers: an echoing model repeats them, and none may become a citation.
    body = {"query": "Where do penguins live? See [9] and [0].", "top_k": 3}
    r = await api.post(f"{URL}/{coll}/answer", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    passages = out["passages"]
    assert len(passages) == 3 and passages[0]["document_id"] in ("penguin", "atlas")
    assert out["model"] == "mock-1" and "[1]" in out["answer"] and "[9]" in out["answer"]
    cited = [(c["passage"], c["document_id"], c["chunk_id"], c["page"]) for c in out["citations"]]
    expected = [(n, p["document_id"], p["chunk_id"], p["page"]) for n, p in enumerate(passages, 1)]
    assert cited == expected  # the mock echoes every numbered passage, and nothing else is cited
    assert any(c[3] == 2 for c in cited)  # the page travels with the citation

    only = (await api.post(f"{URL}/{coll}/answer", json={**body, "retrieval_only": True})).json()
    assert only["answer"] is None and only["citations"] == [] and only["passages"] == passages

    r = await api.post(f"{URL}/{coll}/answer", json={**body, "model": "no-such-model"})
    assert r.status_code == 404 and "no-such-model" in r.text


def events(raw: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for block in raw.split("\n\n"):
        if not block.strip():
            continue
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((lines["event"], json.loads(lines["data"])))
    return out


async def test_a_streamed_answer_sends_passages_text_and_citations(deploy_app: Deployer) -> None:
    async with deploy_app(served="loop") as d:
        tenant = await d.tenant()
        async with httpx.AsyncClient(base_url=d.url or "", headers=tenant.auth, timeout=30) as api:
            coll = (await new_collection(api))["id"]
            await add(api, coll, ANIMALS)
            body = {"query": "which birds hunt at night", "top_k": 2, "stream": True}
            async with api.stream("POST", f"{URL}/{coll}/answer", json=body) as r:
                assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
                received = [chunk async for chunk in r.aiter_text()]
            got = events("".join(received))
            names = [name for name, _ in got]
            assert names[0] == "passages" and names[-2:] == ["citations", "done"]
            assert set(names[1:-2]) == {"delta"} and len(names) > 4  # text arrives in pieces
            passages = got[0][1]["passages"]
            assert passages[0]["document_id"] == "owl"
            text = "".join(data["text"] for name, data in got if name == "delta")
            final = got[-2][1]
            assert final["answer"] == text and text.startswith("You said:")
            assert [c["chunk_id"] for c in final["citations"]] == [p["chunk_id"] for p in passages]

            only = {**body, "retrieval_only": True}
            async with api.stream("POST", f"{URL}/{coll}/answer", json=only) as r:
                got = events("".join([chunk async for chunk in r.aiter_text()]))
            assert [name for name, _ in got] == ["passages", "citations", "done"]

            r = await api.post(f"{URL}/{coll}/answer", json={**body, "model": "no-such-model"})
            assert r.status_code == 404  # refused before the stream starts


async def test_rag_works_unchanged_over_a_remote_gateway(deploy_app: Deployer) -> None:
    # In remote mode the front runs rag direct and reaches the gateway over HTTP (embeddings, generation, stream).
    async with deploy_app(remote=("gateway",), served="loop") as d:
        tenant = await d.tenant()
        async with httpx.AsyncClient(base_url=d.url or "", headers=tenant.auth, timeout=30) as api:
            coll = (await new_collection(api))["id"]
            await add(api, coll, ANIMALS)
            for mode in ("dense", "hybrid"):
                r = await api.post(f"{URL}/{coll}/search", json={"query": "seabirds of Antarctica", "mode": mode})
                assert r.json()["hits"][0]["document_id"] == "penguin", mode
            r = await api.post(f"{URL}/{coll}/answer", json={"query": "seabirds of Antarctica", "top_k": 2})
            out = r.json()
            assert [c["chunk_id"] for c in out["citations"]] == [p["chunk_id"] for p in out["passages"]]
            body = {"query": "seabirds of Antarctica", "top_k": 2, "stream": True}
            async with api.stream("POST", f"{URL}/{coll}/answer", json=body) as r:
                got = events("".join([chunk async for chunk in r.aiter_text()]))
            assert got[-2][0] == "citations" and got[-2][1]["answer"] == out["answer"]
