"""FAAS_JOBS_* settings: defaults, and one line naming the variable when a value is wrong."""

from __future__ import annotations

import pytest

from app.jobs.config import JobsConfig
from app.main import create_app
from app.settings import ConfigError, Settings


def test_defaults() -> None:
    config = JobsConfig.load(Settings.from_env({}))
    assert config == JobsConfig(worker=True, concurrency=4, stalled_seconds=30, max_attempts=5, shutdown_seconds=10)
    assert config.heartbeat_seconds == 7.5


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FAAS_JOBS_WORKER": "maybe"}, "FAAS_JOBS_WORKER='maybe' is not valid (Input should be a valid boolean"),
        ({"FAAS_JOBS_CONCURRENCY": "0"}, "FAAS_JOBS_CONCURRENCY='0' is not valid (Input should be greater than"),
        ({"FAAS_JOBS_CONCURRENCY": "2.5"}, "FAAS_JOBS_CONCURRENCY='2.5' is not valid (Input should be a valid integer"),
        ({"FAAS_JOBS_STALLED_SECONDS": "soon"}, "FAAS_JOBS_STALLED_SECONDS='soon' is not valid"),
        ({"FAAS_JOBS_WORKERS": "2"}, "FAAS_JOBS_WORKERS is not a jobs setting: use one of"),
    ],
)
def test_a_bad_value_names_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        create_app(Settings.from_env(env))
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)
