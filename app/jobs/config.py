"""Job queue settings, from FAAS_JOBS_* (read once from `Settings.environ`, validated before serving)."""

from __future__ import annotations

from dataclasses import dataclass

from app.settings import ConfigError, Settings


@dataclass(frozen=True)
class JobsConfig:
    worker: bool = True  # run a worker inside `faas serve` (`faas worker` always runs one)
    concurrency: int = 4  # jobs one worker runs at once
    # A worker whose heartbeat is older than this is dead: its running jobs go back to the queue.
    stalled_seconds: float = 30.0
    max_attempts: int = 5  # starts of one job (crashed workers included) before it fails for good
    shutdown_seconds: float = 10.0  # how long a stopping worker lets running jobs finish before releasing them

    @property
    def heartbeat_seconds(self) -> float:
        """Heartbeats (and the check for dead workers) run four times per stall window, so one late heartbeat
        never makes a live worker look dead, and a dead one's jobs move within about 1.25 windows."""
        return self.stalled_seconds / 4

    @classmethod
    def from_settings(cls, settings: Settings) -> JobsConfig:
        env = settings.environ
        return cls(
            worker=_choice(env.get("FAAS_JOBS_WORKER"), "FAAS_JOBS_WORKER", "on") == "on",
            concurrency=int(_number(env.get("FAAS_JOBS_CONCURRENCY"), "FAAS_JOBS_CONCURRENCY", 4, 1, 1000, True)),
            stalled_seconds=_number(env.get("FAAS_JOBS_STALLED_SECONDS"), "FAAS_JOBS_STALLED_SECONDS", 30, 1, 3600),
            max_attempts=int(_number(env.get("FAAS_JOBS_MAX_ATTEMPTS"), "FAAS_JOBS_MAX_ATTEMPTS", 5, 1, 100, True)),
            shutdown_seconds=_number(env.get("FAAS_JOBS_SHUTDOWN_SECONDS"), "FAAS_JOBS_SHUTDOWN_SECONDS", 10, 0, 3600),
        )


def _choice(value: str | None, var: str, default: str) -> str:
    chosen = (value or default).strip().lower()
    if chosen not in ("on", "off"):
        raise ConfigError(f"{var}={value!r} is not on or off")
    return chosen


def _number(value: str | None, var: str, default: float, low: float, high: float, whole: bool = False) -> float:
    if value is None or not value.strip():
        return default
    try:
        number = int(value) if whole else float(value)
    except ValueError:
        kind = "whole number" if whole else "number"
        raise ConfigError(f"{var}={value!r} is not a {kind}: use e.g. {var}={default:g}") from None
    if not low <= number <= high:
        raise ConfigError(f"{var}={number:g} is out of range: use {low:g} to {high:g}")
    return number
