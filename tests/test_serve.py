"""`faas serve` run as an operator runs it, then treated as production treats it: killed without warning
(`kill -9`, an OOM kill, a container restart) and started again. Real processes, real ports on 127.0.0.1, the real
embedded PostgreSQL under a temporary data directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from tests.conftest import ADMIN_KEY
from tests.test_cli import FAAS, base_env, free_port, wait_ready


def serve(data: Path, cwd: Path, *args: str, **env: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    proc = subprocess.Popen(
        [*FAAS, "serve", "--port", str(port), *args],
        env=base_env(FAAS_DATA_DIR=str(data), FAAS_ADMIN_KEY=ADMIN_KEY, **env),
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, f"http://127.0.0.1:{port}"


def postmaster_pid(data: Path) -> int:
    return int((data / "pg" / "postmaster.pid").read_text().split()[0])


def gone(pid: int, within: float = 30.0) -> bool:
    """Whether the process `pid` is gone (reaped, not a zombie, which still holds its pid) within `within` s."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid):
            return True
        time.sleep(0.05)
    return False


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return err


def test_a_restart_after_kill_9_owns_the_embedded_server_and_stops_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first, url = serve(data, tmp_path)
    try:
        wait_ready(url, first)
        pg = postmaster_pid(data)
    finally:
        first.kill()  # SIGKILL: no exit hook runs, the server's bookkeeping keeps this dead pid
        first.communicate(timeout=30)
    assert psutil.pid_exists(pg), "PostgreSQL runs on after its user was killed (pg_ctl detached it)"

    # A pid that a newer process now carries (as after a container restart) is as stale as a dead one.
    handles = data / "pg" / ".handle_pids.json"
    written = handles.stat().st_mtime
    time.sleep(1.1)
    impostor_late = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        handles.write_text(json.dumps([*json.loads(handles.read_text()), impostor_late.pid]))
        os.utime(handles, (written, written))

        second, url = serve(data, tmp_path)
        try:
            took = wait_ready(url, second)
            assert postmaster_pid(data) == pg, "the restart joins the running server"
        finally:
            err = stop(second)
    finally:
        impostor_late.kill()
        impostor_late.wait()
        left_running = not gone(pg)
        if left_running:
            os.kill(pg, signal.SIGINT)  # fast shutdown; the test's own server: never leave it behind
    assert not left_running, f"embedded PostgreSQL left running after a clean SIGTERM:\n{err}"
    assert not (data / "pg" / "postmaster.pid").exists()
    logged = [json.loads(line) for line in err.splitlines()]
    assert any(line.get("database") == f"embedded PostgreSQL in {data / 'pg'}" for line in logged), "where is the data?"
    print(f"time to ready of a restart after kill -9: {took:.2f} s")


def test_a_restart_after_everything_died_starts_a_server_even_if_its_old_pid_is_taken(tmp_path: Path) -> None:
    # A container restart: faas serve and PostgreSQL both died without cleaning up, and the pid in postmaster.pid
    # now belongs to another process. The restart must start a server, not "join" that process.
    data = tmp_path / "data"
    first, url = serve(data, tmp_path)
    try:
        wait_ready(url, first)
        pg = postmaster_pid(data)
    finally:
        first.kill()
        first.communicate(timeout=30)
    os.kill(pg, signal.SIGKILL)
    assert gone(pg)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        pidfile = data / "pg" / "postmaster.pid"
        lines = pidfile.read_text().splitlines()
        pidfile.write_text("\n".join([str(other.pid), *lines[1:]]) + "\n")
        socket_lock = Path(lines[4]) / f".s.PGSQL.{lines[3]}.lock"
        socket_lock.write_text(socket_lock.read_text().replace(str(pg), str(other.pid), 1))

        second, url = serve(data, tmp_path)
        try:
            wait_ready(url, second)
            pg = postmaster_pid(data)
            assert pg != other.pid
        finally:
            err = stop(second)
    finally:
        other.kill()
        other.wait()
    assert other.returncode == -signal.SIGKILL, "the other process was left alone"
    assert gone(pg), err


def _served_count(url: str) -> float:
    """faas_http_requests_total for GET /health/live, as one scrape of /metrics reports it."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("faas_http_requests_total{") and 'route="/health/live"' in line and 'method="GET"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_with_two_workers_count_every_worker_s_requests(database_url: str, tmp_path: Path) -> None:
    port = free_port()
    env = base_env(DATABASE_URL=database_url, FAAS_ADMIN_KEY=ADMIN_KEY, FAAS_ACCESS_LOG="on")
    proc = subprocess.Popen(
        [*FAAS, "serve", "--port", str(port), "--workers", "2"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        took = wait_ready(url, proc)
        seen: list[float] = []
        sent = 0
        for _ in range(6):
            for _ in range(15):  # a new connection each: the kernel hands them to either worker
                assert httpx.get(f"{url}/health/live", timeout=10).status_code == 200
                sent += 1
            seen += [_served_count(url) for _ in range(3)]  # scrapes land on either worker too
    finally:
        err = stop(proc)
    assert seen == sorted(seen), f"a counter went backwards between scrapes: {seen}"
    assert seen[-1] == sent, f"the last scrape counted {seen[-1]} of {sent} requests"
    logged = [json.loads(line) for line in err.splitlines()]
    served_by = {line["pid"] for line in logged if line.get("path") == "/health/live"}
    assert len(served_by) == 2, "both workers served (else this test proves nothing)"
    scraped_by = {line["pid"] for line in logged if line.get("path") == "/metrics"}
    assert len(scraped_by) == 2, "both workers answered scrapes"
    print(f"two-worker start to ready: {took:.2f} s")
