"""Two `faas serve` processes on loopback, one with the gateway remote pointing at the other, on the same
database: a request through the first is served by the second with the tenant, request id and trace id intact
(read from the second's JSON access log), and a forged internal call to the second is refused with 401.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_KEY, INTERNAL_SECRET

FAAS = str(Path(sys.executable).with_name("faas"))
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    def __init__(self, port: int, env: dict[str, str], log: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self._log_file = log.open("wb")
        self.proc = subprocess.Popen(
            [FAAS, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, seconds: float = 30.0) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"faas serve exited early:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/health/live", timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"faas serve did not come up:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        self.proc.terminate()  # only the process this test started
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log_file.close()

    def json_lines(self) -> list[dict[str, object]]:
        out = []
        for line in self.log.read_text().splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out


@pytest.fixture
def two_processes(database_url: str, tmp_path: Path) -> Iterator[tuple[Served, Served]]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("FAAS_") and k not in ("DATABASE_URL", "REDIS_URL")}
    base.update(
        DATABASE_URL=database_url,
        FAAS_INTERNAL_SECRET=INTERNAL_SECRET,
        FAAS_ADMIN_KEY=ADMIN_KEY,
        FAAS_ACCESS_LOG="on",
        FAAS_DATA_DIR=str(tmp_path / "var"),
    )
    second_port, first_port = free_port(), free_port()
    second = Served(second_port, base, tmp_path / "second.log")
    first_env = {**base, "FAAS_GATEWAY_MODE": "remote", "FAAS_GATEWAY_URL": f"http://127.0.0.1:{second_port}"}
    first = Served(first_port, first_env, tmp_path / "first.log")
    try:
        second.wait_ready()
        first.wait_ready()
        yield first, second
    finally:
        first.stop()
        second.stop()


@pytest.mark.slow
def test_request_through_the_first_is_served_by_the_second(two_processes: tuple[Served, Served]) -> None:
    first, second = two_processes
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}
    created = httpx.post(first.url + "/api/v1/admin/tenants", json={"name": "two-proc"}, headers=admin).json()
    headers = {
        "authorization": f"Bearer {created['api_key']}",
        "x-request-id": "two-proc-req-1",
        "traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-01",
    }
    r = httpx.get(first.url + "/api/v1/gateway/-/info", headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["plugin"] == "gateway"
    assert r.headers["x-request-id"] == "two-proc-req-1" and TRACE_ID in r.headers["traceparent"]

    time.sleep(0.2)  # let the second flush its access log line
    served = [
        line
        for line in second.json_lines()
        if line.get("logger") == "faas.access" and line.get("path") == "/api/v1/gateway/-/info"
    ]
    assert len(served) == 1, second.log.read_text()[-2000:]
    line = served[0]
    assert line["status"] == 200
    assert line["tenant_id"] == created["tenant_id"]
    assert line["request_id"] == "two-proc-req-1"
    assert line["trace_id"] == TRACE_ID

    forged = {
        "x-tenant-id": created["tenant_id"],
        "x-request-id": "forged-1",
        "x-faas-timestamp": str(int(time.time())),
        "x-faas-signature": "v1=" + "0" * 64,
    }
    r = httpx.get(second.url + "/api/v1/gateway/-/info", headers=forged, timeout=5)
    assert r.status_code == 401 and r.json()["type"] == "urn:faas:problem:unauthenticated"
    # A tenant header alone (no signature, no key) is not trusted either.
    r = httpx.get(second.url + "/api/v1/gateway/-/info", headers={"x-tenant-id": created["tenant_id"]}, timeout=5)
    assert r.status_code == 401
