"""Cold start: from `faas serve` to the first 200 on /health/ready, on an already-initialised data directory; the
same with two workers, and right after a `kill -9` of a ready server (its PostgreSQL still running).

Also reports what `import app.main` costs and checks that it pulls in no heavy library.

    .venv/bin/python benchmarks/cold_start.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HEAVY = ("torch", "sklearn", "scipy", "pypdf", "pypdfium2", "pdfminer", "onnxruntime", "tokenizers", "trafilatura")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(data_dir: Path, workers: int = 1) -> tuple[subprocess.Popen[bytes], float]:
    """`faas serve` on `data_dir`, and the seconds it took to answer 200 on /health/ready."""
    port = free_port()
    env = {**os.environ, "FAAS_DATA_DIR": str(data_dir), "FAAS_ACCESS_LOG": "off"}
    env.pop("DATABASE_URL", None)
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1).status_code == 200:
                return proc, time.perf_counter() - started
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise SystemExit("faas serve exited before it was ready")
        time.sleep(0.005)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)


def one_start(data_dir: Path, workers: int = 1) -> float:
    proc, took = start(data_dir, workers)
    stop(proc)
    return took


def restart_after_kill(data_dir: Path) -> float:
    """Time to ready of a start right after `kill -9` of a ready `faas serve` (its PostgreSQL left running)."""
    proc, _ = start(data_dir)
    proc.kill()
    proc.wait(30)
    again, took = start(data_dir)
    stop(again)
    return took


def import_cost() -> tuple[float, list[str]]:
    code = (
        "import sys, time; t = time.perf_counter(); import app.main; d = time.perf_counter() - t; "
        f"print(d); print(','.join(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    return float(out[0]), [m for m in out[1].split(",") if m]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    seconds, heavy = import_cost()
    print(f"import app.main: {seconds * 1000:.0f} ms; heavy modules loaded: {heavy or 'none'}")
    with tempfile.TemporaryDirectory(prefix="faas-cold-") as tmp:
        data = Path(tmp)
        first = one_start(data)  # initdb + migrations: not a cold start of an initialised directory
        print(f"first start (initdb + migrate): {first:.2f} s")
        times = [one_start(data) for _ in range(args.runs)]
        two = [one_start(data, workers=2) for _ in range(args.runs)]
        killed = [restart_after_kill(data) for _ in range(args.runs)]
    for what, runs in (
        ("cold start to first ready 200 (target < 2 s)", times),
        ("two-worker start (--workers 2) to first ready 200", two),
        ("restart after kill -9 to first ready 200", killed),
    ):
        print(
            f"{what}, {args.runs} runs: median {statistics.median(runs):.2f} s, "
            f"min {min(runs):.2f} s, max {max(runs):.2f} s"
        )


if __name__ == "__main__":
    main()
