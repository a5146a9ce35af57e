"""The `faas` command as an operator meets it: `--version`, help that shows every default, what `serve` logs, and
tenant and key administration against a real database (in-process for the commands, a real process for `serve`)."""

from __future__ import annotations

import json
import signal
import subprocess

from tests.test_cli import FAAS, base_env, free_port, wait_ready


def test_serve_announces_serving_once(database_url: str) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [*FAAS, "serve", "--port", str(port)],
        env=base_env(DATABASE_URL=database_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    serving = [line for line in map(json.loads, err.strip().splitlines()) if line["msg"] == "serving"]
    assert len(serving) == 1, serving  # the check before uvicorn starts opens everything too, silently
    assert serving[0]["plugins"] and serving[0]["modes"]
