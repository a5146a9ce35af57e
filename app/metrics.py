"""Prometheus metrics, one registry per app instance (two apps in one test process never share counters).

`Metrics` holds the HTTP server metrics; other modules (the service client, plugins) register theirs on
`metrics.registry`. `/metrics` renders the registry in the text exposition format.

With several worker processes (`faas serve --workers N`), each worker would answer a scrape with its own counts
only, so a counter would jump between workers' values. `faas serve` then runs prometheus_client's multiprocess
mode: it points `PROMETHEUS_MULTIPROC_DIR` at an empty directory before the workers start, every worker's metrics
live in files there, and a scrape on any worker sums the whole process group. A worker that leaves marks itself
dead; one that starts clears what dead workers left of the live gauges (counters and histograms of a dead worker
stay counted, so totals never go backwards).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_LIVE_GAUGE_FILE = re.compile(r"^gauge_live\w+_(\d+)\.db$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def forget_dead_workers(path: str) -> list[int]:
    """Mark dead every process whose live-gauge files are in `path` but which no longer runs; returns their pids."""
    dead = set()
    for entry in Path(path).iterdir():
        m = _LIVE_GAUGE_FILE.match(entry.name)
        if m and not _alive(int(m.group(1))):
            dead.add(int(m.group(1)))
    for pid in dead:
        multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]  # untyped in 0.2x
    return sorted(dead)


class Metrics:
    def __init__(self, *, multiprocess_dir: str | None = None) -> None:
        """`multiprocess_dir`: the directory of prometheus_client's multiprocess mode, when this process is one of
        several workers (the values go to files there whenever PROMETHEUS_MULTIPROC_DIR was set at import)."""
        self.multiprocess_dir = multiprocess_dir
        if multiprocess_dir:
            forget_dead_workers(multiprocess_dir)
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "faas_http_requests",
            "HTTP requests served, by route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "faas_http_request_duration_seconds",
            "Time to the end of the response, by route template",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    @classmethod
    def for_this_process(cls) -> Metrics:
        return cls(multiprocess_dir=os.environ.get(MULTIPROC_ENV) or None)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def render(self) -> bytes:
        """The exposition: this app's registry, or the sum over every worker of the process group."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        group = CollectorRegistry()
        multiprocess.MultiProcessCollector(group, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(group)

    def close(self) -> None:
        """This worker is leaving: its live gauges stop counting (its counters stay in the totals)."""
        if self.multiprocess_dir:
            multiprocess.mark_process_dead(os.getpid(), self.multiprocess_dir)  # type: ignore[no-untyped-call]


async def metrics_endpoint(request: Request) -> Response:
    metrics: Metrics = request.state.metrics
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)
