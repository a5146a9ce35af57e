"""The render workers (plugins/prompts/pool.py, worker.py, renderer.py): started on first use, killed past their
time or memory budget and replaced, isolated from the server's sockets and secrets, and never left behind when the
server stops, however it stops. Real processes, observed through /proc."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.main import create_app
from app.settings import ConfigError, Settings
from plugins.prompts.config import PromptsConfig
from tests.conftest import ADMIN_KEY, INTERNAL_SECRET, Deployer, eventually, make_settings, new_tenant, serve_app
from tests.plugins.prompts.conftest import cpu_seconds, render_workers
from tests.test_cli import FAAS, base_env, free_port, wait_ready

URL = "/api/v1/prompts"
LIMIT = "urn:faas:problem:render-limit"
BUSY = "{% for a in xs %}{% for b in xs %}{% if a == b and a|string == 'q' %}x{% endif %}{% endfor %}{% endfor %}done"
SLOW = {"xs": list(range(10_000))}  # 10**8 iterations: minutes of CPU, unless stopped


@pytest.fixture
def deploy_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """A test's own settings (`parametrize("deploy_env", [...], indirect=True)`)."""
    return dict(getattr(request, "param", {}))


async def make(api: httpx.AsyncClient, name: str, template: str, syntax: str = "jinja2") -> None:
    r = await api.post(URL, json={"name": name, "template": template, "syntax": syntax})
    assert r.status_code == 201, r.text


async def until_busy(pid: int, baseline: float) -> None:
    """Wait until worker `pid` has burnt 0.2 s of CPU past `baseline`: it is running the job."""

    async def burning() -> None:
        assert cpu_seconds(pid) > baseline + 0.2

    await eventually(burning, within=30)


async def test_workers_start_on_first_use_and_stop_with_the_app(deploy_app: Deployer) -> None:
    async with deploy_app() as d:
        assert render_workers() == {}  # starting the app starts none: cold start and the test suite pay nothing
        _, api = await d.api()
        await make(api, "plain", "Hello {{name}}", syntax="simple")
        r = await api.post(f"{URL}/plain/render", json={"variables": {"name": "Ada"}})
        assert r.status_code == 200 and r.json()["text"] == "Hello Ada"
        assert render_workers() == {}  # a small simple template never needs one
        await make(api, "logic", "{{ name|title }}")
        r = await api.post(f"{URL}/logic/render", json={"variables": {"name": "ada"}})
        assert r.status_code == 200 and r.json()["text"] == "Ada"
        started = render_workers()
        assert len(started) == 1  # the compile started it; the render reused it
    assert not set(started) & set(render_workers())  # the lifespan's exit stopped and reaped it


@pytest.mark.parametrize("deploy_env", [{"FAAS_PROMPTS_RENDER_TIMEOUT_SECONDS": "120"}], indirect=True)
async def test_a_worker_killed_mid_render_is_replaced(api: httpx.AsyncClient) -> None:
    await make(api, "busy", BUSY)
    [worker] = render_workers()
    baseline = cpu_seconds(worker)
    rendering = asyncio.create_task(api.post(f"{URL}/busy/render", json={"variables": SLOW}))
    await until_busy(worker, baseline)
    os.kill(worker, signal.SIGKILL)  # what the kernel's OOM killer, or a crash, would do
    r = await asyncio.wait_for(rendering, 30)
    assert r.status_code == 422, r.text
    assert r.json()["type"] == LIMIT and "stopped the worker process" in r.json()["detail"]
    r = await api.post(f"{URL}/busy/render", json={"variables": {"xs": [1]}})
    assert r.status_code == 200 and r.json()["text"] == "done"
    assert render_workers() and worker not in render_workers()


@pytest.mark.parametrize("deploy_env", [{"FAAS_PROMPTS_COMPILE_TIMEOUT_SECONDS": "0.05"}], indirect=True)
async def test_a_compile_past_its_time_limit_is_refused_and_its_worker_replaced(api: httpx.AsyncClient) -> None:
    await make(api, "small", "{{ x }}")  # starts a worker; compiles in milliseconds
    [worker] = render_workers()
    r = await api.post(URL, json={"name": "big", "template": "{{ x }} and " * 3000, "syntax": "jinja2"})
    assert r.status_code == 422, r.text  # 18,000 tokens: a few tenths of a second to compile
    assert r.json()["type"] == "urn:faas:problem:template-refused"
    assert "compiling the template took longer than 0.05 s" in r.json()["detail"]
    assert (await api.get(f"{URL}/big")).status_code == 404

    async def replaced() -> None:
        assert worker not in render_workers()

    await eventually(replaced, within=10)
    r = await api.post(f"{URL}/small/render", json={"variables": {"x": 1}})
    assert r.status_code == 200 and r.json()["text"] == "1"


# Ten lists of 4 million references: ~320 MB, built a piece at a time (no single value is too big to refuse).
HOARD = "{% set a = [" + ", ".join(["s|list"] * 10) + "] %}{{ a|length }}"


@pytest.mark.parametrize("deploy_env", [{"FAAS_PROMPTS_RENDER_MEMORY_MB": "64"}], indirect=True)
async def test_a_render_past_the_memory_cap_is_a_render_limit_and_the_worker_is_replaced(
    api: httpx.AsyncClient,
) -> None:
    await make(api, "hoard", HOARD)
    [worker] = render_workers()
    r = await api.post(f"{URL}/hoard/render", json={"variables": {"s": "x" * 4_000_000}})
    assert r.status_code == 422, r.text
    assert r.json()["type"] == LIMIT and "memory" in r.json()["detail"]

    async def retired() -> None:
        assert worker not in render_workers()

    await eventually(retired, within=10)
    r = await api.post(f"{URL}/hoard/render", json={"variables": {"s": "xy"}})
    assert r.status_code == 200 and r.json()["text"] == "10"


@pytest.mark.parametrize(
    "deploy_env",
    [
        {
            "FAAS_PROMPTS_RENDER_WORKERS": "1",
            "FAAS_PROMPTS_RENDER_QUEUE_SECONDS": "0.2",
            "FAAS_PROMPTS_RENDER_TIMEOUT_SECONDS": "120",
            "FAAS_CLIENT_RETRIES": "0",
        }
    ],
    indirect=True,
)
async def test_when_every_worker_is_busy_a_render_is_503_with_retry_after(api: httpx.AsyncClient) -> None:
    await make(api, "busy", BUSY)
    await make(api, "quick", "{{ x }}")
    [worker] = render_workers()
    baseline = cpu_seconds(worker)
    rendering = asyncio.create_task(api.post(f"{URL}/busy/render", json={"variables": SLOW}))
    await until_busy(worker, baseline)
    r = await api.post(f"{URL}/quick/render", json={"variables": {"x": 1}})
    assert r.status_code == 503, r.text
    assert r.json()["type"] == "urn:faas:problem:unavailable" and r.headers["retry-after"] == "1"
    os.kill(worker, signal.SIGKILL)
    assert (await asyncio.wait_for(rendering, 30)).status_code == 422
    r = await api.post(f"{URL}/quick/render", json={"variables": {"x": 1}})
    assert r.status_code == 200 and r.json()["text"] == "1"


async def test_workers_inherit_no_sockets_and_no_secrets(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {"DATABASE_URL": database_url, "FAAS_INTERNAL_SECRET": INTERNAL_SECRET, "OPENAI_API_KEY": "sk-0123456789"}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    app = create_app(make_settings(database_url, FAAS_PLUGINS="prompts"))
    async with serve_app(app) as base:  # a listening socket and database connections in this process
        async with httpx.AsyncClient(base_url=base, headers={"authorization": f"Bearer {ADMIN_KEY}"}) as admin:
            key = (await new_tenant(admin))["api_key"]
        async with httpx.AsyncClient(base_url=base, headers={"authorization": f"Bearer {key}"}) as api:
            await make(api, "p", "{{ x }}")
            [worker] = render_workers()
            links = open_files(worker)
            environ = read_environ(worker)
            assert [link for link in open_files(os.getpid()) if link.startswith("socket:")]  # there were some
    assert not [link for link in links if link.startswith("socket:")], links
    assert len(links) <= 4, links  # stdin, stdout, stderr and the protocol's copy of stdout: nothing inherited
    for name, value in secrets.items():
        assert value.encode() not in environ, name


def test_prompts_settings_are_validated() -> None:
    config = PromptsConfig.load(Settings.from_env({"FAAS_PROMPTS_RENDER_WORKERS": "3"}))
    assert config.render_workers == 3 and config.render_timeout_seconds == 1.0 and config.max_output_chars == 262144
    for name, value in [("RENDER_WORKERS", "0"), ("RENDER_TIMEOUT_SECONDS", "soon"), ("MAX_OUTPUT_CHARS", "-1")]:
        with pytest.raises(ConfigError, match=f"FAAS_PROMPTS_{name}"):
            PromptsConfig.load(Settings.from_env({f"FAAS_PROMPTS_{name}": value}))


# --- `faas serve`: however the server stops, its render workers stop with it -------------------------------------


def open_files(pid: int) -> list[str]:
    links = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            links.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue  # closed meanwhile (the directory listing's own descriptor)
    return links


def read_environ(pid: int) -> bytes:
    return Path(f"/proc/{pid}/environ").read_bytes()


def children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.add(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return found


def poll(check: Callable[[], Any], within: float = 30.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class Serve:
    """`faas serve` on a free loopback port against the test database, its log in a file."""

    def __init__(self, database_url: str, tmp_path: Path, *args: str, **env: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / "serve.log"
        environment = base_env(DATABASE_URL=database_url, FAAS_ADMIN_KEY=ADMIN_KEY, FAAS_ACCESS_LOG="off", **env)
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [*FAAS, "serve", "--port", str(self.port), *args], env=environment, cwd=tmp_path, stderr=log
            )
        wait_ready(self.base, self.proc)  # type: ignore[arg-type]  # it only polls the process
        admin = {"authorization": f"Bearer {ADMIN_KEY}"}
        key = httpx.post(f"{self.base}/api/v1/admin/tenants", json={"name": "t"}, headers=admin).json()["api_key"]
        self.client = httpx.Client(base_url=self.base, headers={"authorization": f"Bearer {key}"}, timeout=60)

    def workers(self) -> dict[int, int]:
        return render_workers({self.proc.pid, *children(self.proc.pid)})


@pytest.mark.slow
def test_sigterm_to_serve_with_workers_leaves_no_render_worker_behind(database_url: str, tmp_path: Path) -> None:
    served = Serve(database_url, tmp_path, "--workers", "2")
    try:
        assert served.client.post(URL, json={"name": "p", "template": "{{ x }}", "syntax": "jinja2"}).status_code == 201
        assert served.client.post(URL, json={"name": "busy", "template": BUSY, "syntax": "jinja2"}).status_code == 201

        def render_many() -> None:
            for _ in range(10):
                assert served.client.post(f"{URL}/p/render", json={"variables": {"x": 1}}).json()["text"] == "1"

        threads = [threading.Thread(target=render_many) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        started = served.workers()
        assert started and set(started.values()) <= children(served.proc.pid)  # each under a uvicorn worker
        in_flight: list[httpx.Response] = []

        def render_slowly() -> None:
            in_flight.append(served.client.post(f"{URL}/busy/render", json={"variables": SLOW}))

        slow = threading.Thread(target=render_slowly)
        slow.start()
        time.sleep(0.3)
    finally:
        served.proc.send_signal(signal.SIGTERM)
        served.proc.wait(60)
    slow.join(30)
    assert served.proc.returncode == 0
    assert in_flight and in_flight[0].status_code == 422  # answered (its 1 s limit) before the server stopped
    assert not set(started) & set(render_workers(anywhere=True)), "a render worker outlived the server"
    lines = served.log.read_text().strip().splitlines()
    assert [json.loads(line) for line in lines]  # every line JSON, the workers' included


@pytest.mark.slow
def test_a_killed_server_takes_its_busy_render_workers_with_it(database_url: str, tmp_path: Path) -> None:
    served = Serve(database_url, tmp_path, FAAS_PROMPTS_RENDER_TIMEOUT_SECONDS="120")
    try:
        assert served.client.post(URL, json={"name": "busy", "template": BUSY, "syntax": "jinja2"}).status_code == 201
        [worker] = served.workers()
        baseline = cpu_seconds(worker)

        def render_slowly() -> None:
            with contextlib.suppress(httpx.HTTPError):  # the server dies under it
                served.client.post(f"{URL}/busy/render", json={"variables": SLOW})

        threading.Thread(target=render_slowly, daemon=True).start()

        def burning() -> None:
            assert cpu_seconds(worker) > baseline + 0.2

        poll(burning)
    finally:
        served.proc.kill()  # SIGKILL: no lifespan exit, no cleanup of any kind
        served.proc.wait(30)

    def gone() -> None:
        assert worker not in render_workers(anywhere=True)

    poll(gone, within=10)  # not after its 120 s render: it died with its parent
