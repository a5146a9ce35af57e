"""Hostile prompts against `faas serve`: each one's answer and time, and the worst /health/live latency meanwhile.

Starts an embedded PostgreSQL and `faas serve` (the prompts plugin alone) on 127.0.0.1, creates a tenant, then for
each case of tests/plugins/prompts/hostile.py creates the prompt (and renders it) while a thread polls /health/live
every 5 ms. A request past --timeout is abandoned and the server killed and restarted (before the render workers it
could be stuck inside one C call for hours).

    .venv/bin/python benchmarks/prompts_hostile.py [--timeout 120] [--only power,slow]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import migrations
from benchmarks._app import ADMIN_KEY, embedded_server, fresh_database
from tests.plugins.prompts.hostile import CASES

URL = "/api/v1/prompts"


class Probe:
    def __init__(self, url: str) -> None:
        self.url = url
        self.worst = 0.0
        self._stop = threading.Event()
        self.samples = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        while self.samples == 0:  # connected and answered once before the hostile request goes
            time.sleep(0.001)

    def _run(self) -> None:
        with httpx.Client(timeout=None) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    client.get(f"{self.url}/health/live")
                except httpx.HTTPError:
                    pass  # the server was killed under it
                self.worst = max(self.worst, time.perf_counter() - started)
                self.samples += 1
                self._stop.wait(0.005)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join(5)  # a probe stuck on a stalled server keeps counting only until it is killed
        return self.worst


class Server:
    def __init__(self, database_url: str, log: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("FAAS_")},
            "DATABASE_URL": database_url,
            "FAAS_ADMIN_KEY": ADMIN_KEY,
            "FAAS_PLUGINS": "prompts",
            "FAAS_ACCESS_LOG": "off",
        }
        with log.open("a") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "serve", "--port", str(self.port)], env=env, stderr=out
            )
        while True:
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise SystemExit(f"faas serve exited; see {log}")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)
        self.proc.wait(60)


def main(timeout: float, only: list[str]) -> None:
    with embedded_server() as server_url, tempfile.TemporaryDirectory(prefix="faas-hostile-") as tmp:
        database_url = asyncio.run(fresh_database(server_url))
        migrations.upgrade(database_url)
        log = Path(tmp) / "serve.log"
        server = Server(database_url, log)
        admin = {"authorization": f"Bearer {ADMIN_KEY}"}
        key = httpx.post(f"{server.url}/api/v1/admin/tenants", json={"name": "h"}, headers=admin).json()["api_key"]
        headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
        try:
            for i, case in enumerate(CASES):
                if only and not any(word.lower() in case.id.lower() for word in only):
                    continue
                name = f"hostile-{i}"
                create = orjson.dumps({"name": name, **case.create})
                render = None if case.render is None else orjson.dumps(case.render)
                probe = Probe(server.url)
                started = time.perf_counter()
                outcome = ""
                try:
                    with httpx.Client(base_url=server.url, headers=headers, timeout=timeout) as client:
                        r = client.post(URL, content=create)
                        if render is not None and r.status_code == 201:
                            r = client.post(f"{URL}/{name}/render", content=render)
                    kind = r.json().get("type", "").rsplit(":", 1)[-1] if r.content else ""
                    outcome = f"{r.status_code} {kind}"
                except httpx.TimeoutException:
                    outcome = f"no answer in {timeout:g} s"
                took = time.perf_counter() - started
                if outcome.startswith("no answer"):
                    server.stop(signal.SIGKILL)
                    worst = probe.stop()
                    server = Server(database_url, log)
                else:
                    worst = probe.stop()
                print(
                    f"{case.id:26s} {outcome:22s} request {took:8.3f} s   worst /health/live {worst * 1000:9.1f} ms",
                    flush=True,
                )
        finally:
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for a hostile request")
    parser.add_argument("--only", default="", help="comma-separated words: run the cases whose name has one")
    args = parser.parse_args()
    main(args.timeout, [w for w in args.only.split(",") if w.strip()])
