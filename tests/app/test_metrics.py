"""Metrics across worker processes: what a dead worker leaves behind in the multiprocess directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from app.metrics import MULTIPROC_ENV, forget_dead_workers

WORKER = """
from app.client_metrics import ClientMetrics
from prometheus_client import CollectorRegistry
m = ClientMetrics(CollectorRegistry())
m.transition("gateway", "closed", "open")
m.attempt("gateway", "GET", "200", 0.01)
"""


def test_a_dead_worker_s_live_gauges_are_forgotten_and_its_counts_kept(tmp_path: Path) -> None:
    worker = subprocess.run(
        [sys.executable, "-c", WORKER], env={MULTIPROC_ENV: str(tmp_path)}, capture_output=True, text=True
    )
    assert worker.returncode == 0, worker.stderr
    pid = None
    names = sorted(p.name for p in tmp_path.iterdir())
    for name in names:
        if name.startswith("gauge_livemax_"):
            pid = int(name.removeprefix("gauge_livemax_").removesuffix(".db"))
    assert pid is not None, names
    assert forget_dead_workers(str(tmp_path)) == [pid]
    left = sorted(p.name for p in tmp_path.iterdir())
    assert f"gauge_livemax_{pid}.db" not in left  # a dead worker's breaker says nothing about now
    assert any(n.startswith("counter_") for n in left) and any(n.startswith("histogram_") for n in left)
    assert forget_dead_workers(str(tmp_path)) == []
