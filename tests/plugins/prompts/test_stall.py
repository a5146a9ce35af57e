"""No prompt can stall the server: while each hostile prompt (hostile.py) is created and rendered, another client's
`/health/live` keeps answering fast, and the hostile request itself gets its 4xx problem.

Real uvicorn servers on 127.0.0.1, each running its event loop in a thread of its own (the loop is what is
measured); the probe polls from another thread. In remote mode the front server proxies to a second server, which
does the work: both are probed. Before the render workers the worst probe waited 11 s to hours.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from types import TracebackType

import httpx
import orjson
import pytest

from app.main import create_app
from tests.conftest import ADMIN_KEY, INTERNAL_SECRET, make_settings, remote_env
from tests.plugins.prompts.hostile import CASES
from tests.servers import serve_in_thread

URL = "/api/v1/prompts"
# A stall was 11 s to hours; a free loop answers in a millisecond or two. Seen here: mostly under 60 ms (parsing a
# 10 MB request body happens on the loop, before the plugin sees it), once 190 ms on a 2-core machine at load 4 (the
# probe, the servers and this test share one process, its GIL and its garbage collector). Hence the margin.
WORST_LIVE_SECONDS = 0.5


class Probe:
    """Polls `/health/live` of each server every few milliseconds from its own thread; keeps the slowest answer."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.worst = 0.0
        self.samples = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="live-probe", daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=120) as client:
            while not self._stop.is_set():
                for url in self.urls:
                    started = time.perf_counter()
                    r = client.get(f"{url}/health/live")
                    self.worst = max(self.worst, time.perf_counter() - started)
                    self.samples += 1
                    if r.status_code != 200:
                        self.failures.append(f"{url}: {r.status_code}")
                self._stop.wait(0.005)

    def __enter__(self) -> Probe:
        self._thread.start()
        while self.samples < len(self.urls):  # connected and answered once before the hostile request goes
            time.sleep(0.001)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(120)


@pytest.fixture
def servers(mode: str, database_url: str) -> Iterator[tuple[str, list[str]]]:
    """The URL clients use, and the URLs to probe."""
    env = {"FAAS_INTERNAL_SECRET": INTERNAL_SECRET, "FAAS_PLUGINS": "prompts"}
    with serve_in_thread(create_app(make_settings(database_url, **env))) as backend:
        if mode == "direct":
            yield backend, [backend]
            return
        front_app = create_app(make_settings(database_url, **env, **remote_env(("prompts",), backend)))
        with serve_in_thread(front_app) as front:
            yield front, [front, backend]


def test_no_hostile_prompt_stalls_the_server(servers: tuple[str, list[str]]) -> None:
    front, probed = servers
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}
    key = httpx.post(f"{front}/api/v1/admin/tenants", json={"name": "t"}, headers=admin).json()["api_key"]
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    rows: list[tuple[str, int, str, float, float]] = []
    with httpx.Client(base_url=front, headers=headers, timeout=120) as client:
        for i, case in enumerate(CASES):
            name = f"hostile-{i}"
            # Encoded up front: the probe measures the servers, not this thread encoding megabytes of JSON.
            create = orjson.dumps({"name": name, **case.create})
            render = None if case.render is None else orjson.dumps(case.render)
            with Probe(probed) as probe:
                started = time.perf_counter()
                r = client.post(URL, content=create)
                if render is not None and r.status_code == 201:
                    r = client.post(f"{URL}/{name}/render", content=render)
                took = time.perf_counter() - started
            assert not probe.failures, (case.id, probe.failures)
            problem = r.json().get("type", "") if r.headers.get("content-type", "").endswith("json") else r.text[:80]
            rows.append((case.id, r.status_code, problem, took, probe.worst))
    table = "\n".join(
        f"{case:28s} {status} {problem.rsplit(':', 1)[-1]:16s} request {took * 1000:7.0f} ms   "
        f"worst /health/live {worst * 1000:6.1f} ms"
        for case, status, problem, took, worst in rows
    )
    print(f"\n{table}")
    for case, (_, status, problem, _, _) in zip(CASES, rows, strict=True):
        assert (status, problem) == case.expect, f"{case.id}\n{table}"
    assert max(worst for *_, worst in rows) < WORST_LIVE_SECONDS, table
