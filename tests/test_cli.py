"""The `faas` command, run as a user would: real processes, real ports on 127.0.0.1, real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.conftest import ADMIN_KEY, _admin, with_database

FAAS = [sys.executable, "-m", "app.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(
    args: list[str], env: dict[str, str], cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FAAS, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAAS_") and k != "DATABASE_URL"}
    env.update(extra)
    return env


def wait_ready(url: str, proc: subprocess.Popen[str], timeout: float = 60) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"faas serve exited early:\n{proc.stderr.read() if proc.stderr else ''}")
        try:
            if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError("faas serve never became ready")


@pytest.fixture
def empty_database(server_url: str) -> Iterator[str]:
    name = "faas_empty_" + secrets.token_hex(4)
    asyncio.run(_admin(server_url, f"CREATE DATABASE {name}"))
    yield with_database(server_url, name)
    asyncio.run(_admin(server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def test_bad_configuration_exits_with_one_line(tmp_path: Path) -> None:
    r = run(["serve"], base_env(FAAS_RAG_MODE="remote"), cwd=tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "FAAS_RAG_URL" in lines[0]


@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["tenants", "create", "acme"], ["migrate"]])
def test_database_url_pointing_at_nothing_is_one_line(tmp_path: Path, command: list[str]) -> None:
    nothing = f"postgresql://faas:s3cret-pw@127.0.0.1:{free_port()}/faas"
    r = run(command, base_env(DATABASE_URL=nothing), cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("faas: ") and "DATABASE_URL" in lines[0], r.stderr
    assert "s3cret-pw" not in r.stderr


def test_serve_refuses_a_database_behind_and_migrate_fixes_it(empty_database: str, tmp_path: Path) -> None:
    env = base_env(DATABASE_URL=empty_database)
    r = run(["serve", "--port", str(free_port())], env, cwd=tmp_path)
    assert r.returncode == 2 and "faas migrate" in r.stderr
    r = run(["migrate"], env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = run(["tenants", "create", "acme", "--json"], env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    created = json.loads(r.stdout)
    assert created["tenant_id"].startswith("ten_") and created["api_key"].startswith("faas_")
    assert created["api_key"] not in r.stderr

    async def stored() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(empty_database)
        try:
            rows: list[asyncpg.Record] = await conn.fetch(
                "SELECT t.name, k.prefix FROM tenants t JOIN api_keys k ON k.tenant_id = t.id"
            )
            return rows
        finally:
            await conn.close()

    rows = asyncio.run(stored())
    assert [r["name"] for r in rows] == ["acme"] and created["api_key"].startswith(rows[0]["prefix"])
    again = run(["tenants", "create", "acme"], env, cwd=tmp_path)
    assert again.returncode == 1 and "already exists" in again.stderr


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_on_the_embedded_database(tmp_path: Path, workers: int) -> None:
    """Serve, use, and stop with SIGTERM (what docker stop and Kubernetes send): a clean exit that stops the
    embedded PostgreSQL, whether one process serves or a supervisor runs workers."""
    port = free_port()
    env = base_env(FAAS_DATA_DIR=str(tmp_path / "data"), FAAS_ADMIN_KEY=ADMIN_KEY)
    proc = subprocess.Popen(
        [*FAAS, "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc)
        created = httpx.post(
            f"{base}/api/v1/admin/tenants", json={"name": "laptop"}, headers={"authorization": f"Bearer {ADMIN_KEY}"}
        ).json()
        for _ in range(20):
            r = httpx.get(
                f"{base}/api/v1/prompts/-/info",
                headers={"authorization": f"Bearer {created['api_key']}", "x-forwarded-for": "203.0.113.7"},
            )
            assert r.status_code == 200
        assert (tmp_path / "data" / "pg" / "PG_VERSION").is_file()
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert ADMIN_KEY not in err and created["api_key"] not in err  # secrets never in logs
    lines = [json.loads(line) for line in err.strip().splitlines()]  # every log line is JSON
    started = {line["pid"] for line in lines if line["msg"] == "Application startup complete."}
    assert len(started) == workers, "every worker should have run the lifespan against the one embedded server"
    served = [line for line in lines if line.get("route") == "/api/v1/prompts/-/info"]
    assert len(served) == 20 and {line["client"] for line in served} == {"203.0.113.7"}  # behind a trusted proxy
    assert not (tmp_path / "data" / "pg" / "postmaster.pid").exists(), "embedded PostgreSQL left running"


def test_a_plugins_bad_setting_stops_serve_with_one_line(database_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "models.yaml"
    bad.write_text("models: [this is not a model map\n")
    r = run(
        ["serve", "--port", str(free_port())],
        base_env(DATABASE_URL=database_url, FAAS_GATEWAY_CONFIG=str(bad)),
        cwd=tmp_path,
    )
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.strip().splitlines() if line.startswith("faas:")]
    assert len(lines) == 1 and "FAAS_GATEWAY_CONFIG" in lines[0] and "Traceback" not in r.stderr
