"""Prometheus metrics of the service client: tries, retries, give-ups, breaker state and upstream latency.

One `ClientMetrics` per app (on the app's registry), shared by its upstream clients, labelled by upstream name.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from app.metrics import LATENCY_BUCKETS

BREAKER_STATES = {"closed": 0, "half-open": 1, "open": 2}


class ClientMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.attempts = Counter(
            "faas_client_attempts",
            "Tries sent to an upstream, by outcome (HTTP status, connect_error, timeout, broken, circuit_open)",
            ["upstream", "method", "outcome"],
            registry=registry,
        )
        self.retries = Counter("faas_client_retries", "Retries, by reason", ["upstream", "reason"], registry=registry)
        self.giveups = Counter(
            "faas_client_giveups",
            "Calls that stopped retrying, by reason (exhausted, deadline, budget, not_idempotent, error slug)",
            ["upstream", "reason"],
            registry=registry,
        )
        self.breaker_state = Gauge(
            "faas_client_breaker_state",
            "Breaker state per upstream: 0 closed, 1 half-open, 2 open",
            ["upstream"],
            registry=registry,
            multiprocess_mode="livemax",  # across workers: the worst state any live worker's breaker is in
        )
        self.breaker_transitions = Counter(
            "faas_client_breaker_transitions", "Breaker transitions", ["upstream", "to"], registry=registry
        )
        self.latency = Histogram(
            "faas_client_upstream_duration_seconds",
            "Time of one try against an upstream",
            ["upstream", "method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    def attempt(self, upstream: str, method: str, outcome: str, seconds: float) -> None:
        self.attempts.labels(upstream, method, outcome).inc()
        if outcome != "circuit_open":
            self.latency.labels(upstream, method).observe(seconds)

    def retry(self, upstream: str, reason: str) -> None:
        self.retries.labels(upstream, reason).inc()

    def giveup(self, upstream: str, reason: str) -> None:
        self.giveups.labels(upstream, reason).inc()

    def transition(self, upstream: str, old: str, new: str) -> None:
        self.breaker_state.labels(upstream).set(BREAKER_STATES[new])
        if old != new:
            self.breaker_transitions.labels(upstream, new).inc()
