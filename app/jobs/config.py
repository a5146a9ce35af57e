"""The job queue's settings (`FAAS_JOBS_*`), validated before serving; `faas config` lists them."""

from __future__ import annotations

from pydantic import Field

from app.config import SettingsGroup


class JobsConfig(SettingsGroup):
    group = "jobs"

    worker: bool = Field(
        default=True, description="Run a worker inside `faas serve` (on/off); `faas worker` always does"
    )
    concurrency: int = Field(default=4, ge=1, le=1000, description="Jobs one worker runs at once")
    stalled_seconds: float = Field(
        default=30.0,
        ge=1,
        le=3600,
        description="A worker silent this long is dead: its running jobs go back to the queue",
    )
    max_attempts: int = Field(
        default=5, ge=1, le=100, description="Starts of one job (crashed workers included) before it fails for good"
    )
    shutdown_seconds: float = Field(
        default=10.0,
        ge=0,
        le=3600,
        description="How long a stopping worker lets running jobs finish, then hands them back",
    )

    @property
    def heartbeat_seconds(self) -> float:
        """Heartbeats (and the check for dead workers) run four times per stall window, so one late heartbeat
        never makes a live worker look dead, and a dead one's jobs move within about 1.25 windows."""
        return self.stalled_seconds / 4
