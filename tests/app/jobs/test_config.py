"""FAAS_JOBS_* settings: defaults, and one line naming the variable when a value is wrong."""

from __future__ import annotations

import pytest

from app.jobs.config import JobsConfig
from app.main import create_app
from app.settings import ConfigError, Settings


def test_defaults() -> None:
    config = JobsConfig.from_settings(Settings.from_env({}))
    assert config == JobsConfig(worker=True, concurrency=4, stalled_seconds=30, max_attempts=5, shutdown_seconds=10)
    assert config.heartbeat_seconds == 7.5


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FAAS_JOBS_WORKER": "maybe"}, "FAAS_JOBS_WORKER='maybe' is not on or off"),
        ({"FAAS_JOBS_CONCURRENCY": "0"}, "FAAS_JOBS_CONCURRENCY=0 is out of range: use 1 to 1000"),
        ({"FAAS_JOBS_CONCURRENCY": "2.5"}, "FAAS_JOBS_CONCURRENCY='2.5' is not a whole number"),
        ({"FAAS_JOBS_STALLED_SECONDS": "soon"}, "FAAS_JOBS_STALLED_SECONDS='soon' is not a number"),
    ],
)
def test_a_bad_value_names_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        create_app(Settings.from_env(env))
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)
