"""Ingestion retries a transient failure of the rag plugin: with rag remote behind a real HTTP proxy on 127.0.0.1
that answers 503 to the first `add_documents` calls, the job still succeeds, each chunk is stored once (also when a
failed call had reached rag and only its answer was lost), and the proxy sees the failures, then the success, spaced
by FAAS_INGESTION_RETRY_WAITS. A failure that outlasts every retry fails the job with a reason naming the step, and
the worker goes on to succeed with the next job.

The service client repeats a 503 only for a request that is safe to repeat, and `POST .../documents` carries no
Idempotency-Key: every retry the proxy sees here is ingestion's own (`_retrying`), not the client's."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.main import create_app
from app.settings import ConfigError, Settings
from plugins.ingestion.config import IngestionConfig
from tests.conftest import INTERNAL_SECRET, make_settings, serve_app
from tests.plugins.ingestion.conftest import RAG, chunks, finished, new_collection, upload, with_remote_rag

WAIT = 0.3  # each of ingestion's pauses in these tests (FAAS_INGESTION_RETRY_WAITS)
HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}
TEXT = (
    b"# Owls\n\nOwls hunt silently at night over open fields.\n\n"
    b"# Herons\n\nHerons wait motionless in shallow water for fish."
)


@dataclass
class Seen:
    status: int  # what the proxy answered
    at: float
    upstream: int | None = None  # what rag answered, when the call was forwarded


@dataclass
class FlakyProxy:
    """Forwards every request to `upstream`, except `add_documents` calls (`POST .../documents`) that `plan` names
    by their number (1, 2, ...): "refuse" answers 503 without forwarding, "lose" forwards and then answers 503 (the
    write happened, its answer was lost). `fail_all` answers 503 to every one."""

    upstream: str
    plan: dict[int, str] = field(default_factory=dict)
    fail_all: bool = False
    adds: list[Seen] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        adding = request.method == "POST" and request.url.path.endswith("/documents")
        what = ("refuse" if self.fail_all else self.plan.get(len(self.adds) + 1, "")) if adding else ""
        started = time.monotonic()
        if what == "refuse":
            self.adds.append(Seen(503, started))
            return Response(b"upstream overloaded", status_code=503, media_type="text/plain")
        # The Host header is passed on unchanged: the call is signed for it.
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP]
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        async with httpx.AsyncClient(base_url=self.upstream, timeout=60) as client:
            answer = await client.request(request.method, target, headers=headers, content=body)
        if what == "lose":
            self.adds.append(Seen(503, started, answer.status_code))
            return Response(b"upstream overloaded", status_code=503, media_type="text/plain")
        if adding:
            self.adds.append(Seen(answer.status_code, started, answer.status_code))
        kept = {k: v for k, v in answer.headers.items() if k.lower() not in HOP}
        return Response(answer.content, status_code=answer.status_code, headers=kept)


@asynccontextmanager
async def behind_proxy(database_url: str, proxy: FlakyProxy) -> AsyncIterator[httpx.AsyncClient]:
    """A tenant's client of a deployment running ingestion direct (with a job worker) and rag remote, through
    `proxy`, in front of a real rag deployment; `proxy.upstream` is set to that deployment's URL."""
    secret = {"FAAS_INTERNAL_SECRET": INTERNAL_SECRET}
    rag_app = create_app(make_settings(database_url, FAAS_PLUGINS="gateway,rag", **secret))
    routes = [Route("/{path:path}", proxy.handle, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])]
    async with serve_app(rag_app) as rag_url, serve_app(Starlette(routes=routes)) as proxy_url:
        proxy.upstream, proxy.url = rag_url, proxy_url
        retry_waits = ",".join([str(WAIT)] * 3)
        async with with_remote_rag(database_url, proxy_url, FAAS_INGESTION_RETRY_WAITS=retry_waits) as api:
            yield api


async def test_a_rag_failing_twice_is_retried_and_every_chunk_is_stored_once(database_url: str) -> None:
    proxy = FlakyProxy(upstream="", plan={1: "refuse", 2: "lose"})
    async with behind_proxy(database_url, proxy) as api:
        coll = (await new_collection(api, "birds"))["id"]
        [job] = await upload(api, "birds", ("birds.md", TEXT))
        done = await finished(api, job["id"])
        assert done["status"] == "succeeded", done
        assert done["attempts"] == 1, done  # retried within the run, not by running the job again

        # Refused, then written by rag with its answer lost, then written again and answered.
        assert [(s.status, s.upstream) for s in proxy.adds] == [(503, None), (503, 201), (201, 201)]
        gaps = [b.at - a.at for a, b in zip(proxy.adds, proxy.adds[1:], strict=False)]
        assert all(gap >= WAIT for gap in gaps), gaps  # ingestion's pauses, not a client's quick re-send

        found = await chunks(api, coll, done["result"]["document_id"])
        texts = [c["text"] for c in found]
        assert texts == [
            "Owls hunt silently at night over open fields.",
            "Herons wait motionless in shallow water for fish.",
        ]
        assert done["result"]["chunk_count"] == len(texts) == 2
        info = (await api.get(f"{RAG}/{coll}")).json()
        assert (info["document_count"], info["chunk_count"]) == (1, 2), info  # the lost answer's write, replaced
        hits = (await api.post(f"{RAG}/{coll}/search", json={"query": "owls at night", "mode": "dense"})).json()
        assert hits["hits"][0]["text"] == texts[0]


async def test_a_rag_failing_past_every_retry_fails_the_job_and_the_worker_goes_on(database_url: str) -> None:
    proxy = FlakyProxy(upstream="", fail_all=True)
    async with behind_proxy(database_url, proxy) as api:
        coll = (await new_collection(api, "birds"))["id"]
        [job] = await upload(api, "birds", ("birds.md", TEXT))
        failed = await finished(api, job["id"])
        assert failed["status"] == "failed", failed
        assert failed["attempts"] == 1, failed
        assert [s.status for s in proxy.adds] == [503] * 4  # the first call and three retries
        error = failed["error"]
        assert error.startswith(f"storing the chunks in the rag collection {coll} failed 4 times"), error
        assert "HTTP 503" in error, error
        info = (await api.get(f"{RAG}/{coll}")).json()
        assert (info["document_count"], info["chunk_count"]) == (0, 0), info

        proxy.fail_all = False
        [job] = await upload(api, "birds", ("herons.md", b"Herons wait motionless in shallow water."))
        done = await finished(api, job["id"])
        assert done["status"] == "succeeded", done
        assert [s.status for s in proxy.adds] == [503] * 4 + [201]
        found = await chunks(api, coll, done["result"]["document_id"])
        assert [c["text"] for c in found] == ["Herons wait motionless in shallow water."]
        info = (await api.get(f"{RAG}/{coll}")).json()
        assert (info["document_count"], info["chunk_count"]) == (1, 1), info


def test_the_retry_waits_are_a_setting() -> None:
    def load(value: str) -> IngestionConfig:
        return IngestionConfig.load(Settings.from_env({"FAAS_INGESTION_RETRY_WAITS": value}))

    assert IngestionConfig().waits() == (1.0, 3.0, 9.0)
    assert load("0.5, 2").waits() == (0.5, 2.0)
    assert load("0").waits() == (0.0,)
    for bad in ("soon", "1,,3", "-1", "1,700", ",".join(["1"] * 11)):
        with pytest.raises(ConfigError, match="FAAS_INGESTION_RETRY_WAITS"):
            load(bad)
