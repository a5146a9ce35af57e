"""Cold start: from `faas serve` to the first 200 on /health/ready, on an already-initialised data directory.

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


def one_start(data_dir: Path) -> float:
    port = free_port()
    env = {**os.environ, "FAAS_DATA_DIR": str(data_dir), "FAAS_ACCESS_LOG": "off"}
    env.pop("DATABASE_URL", None)
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1).status_code == 200:
                    return time.perf_counter() - started
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise SystemExit("faas serve exited before it was ready")
            time.sleep(0.005)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


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
    print(
        f"cold start to first ready 200, {args.runs} runs: median {statistics.median(times):.2f} s, "
        f"min {min(times):.2f} s, max {max(times):.2f} s (target < 2 s)"
    )


if __name__ == "__main__":
    main()
