"""Plugin settings on pydantic-settings: typed, validated with one line naming the variable, and listed by
`faas config` (whose markdown is the README's table)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from app.settings import ConfigError, Settings
from plugins.cache.config import CacheConfig
from plugins.gateway.config import GatewayConfig

ROOT = Path(__file__).resolve().parents[2]


def test_values_are_typed_and_defaults_apply() -> None:
    config = CacheConfig.load(
        Settings.from_env({"FAAS_CACHE_DEFAULT_TTL": "60", "FAAS_CACHE_SEMANTIC_THRESHOLD": ".9"})
    )
    assert config.default_ttl == 60 and config.semantic_threshold == 0.9 and config.max_value_bytes == 1024 * 1024
    assert config.backend_for(None) == "postgres" and config.backend_for("redis://127.0.0.1") == "redis"
    # The core's own FAAS_<NAME>_MODE/_URL/_CLIENT_* are not the plugin's settings, and not typos either.
    env = {"FAAS_GATEWAY_CLIENT_TIMEOUT": "5", "FAAS_GATEWAY_MODE": "direct", "FAAS_GATEWAY_MAX_CONNECTIONS": "7"}
    assert GatewayConfig.load(Settings.from_env(env)).max_connections == 7


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"FAAS_CACHE_DEFAULT_TTL": "soon"}, "FAAS_CACHE_DEFAULT_TTL='soon' is not valid"),
        ({"FAAS_CACHE_DEFAULT_TTL": "0"}, "use e.g. FAAS_CACHE_DEFAULT_TTL=86400"),
        ({"FAAS_CACHE_BACKEND": "memcached"}, "FAAS_CACHE_BACKEND='memcached'"),
        ({"FAAS_CACHE_BACKEND": "redis"}, "needs REDIS_URL"),
        ({"FAAS_CACHE_TTL": "5"}, "FAAS_CACHE_TTL is not a cache setting: use one of"),
        ({"FAAS_GATEWAY_CONFIG": "/nonexistent/models.yaml"}, "FAAS_GATEWAY_CONFIG='/nonexistent/models.yaml'"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(env: dict[str, str], expected: str) -> None:
    config = CacheConfig if "CACHE" in next(iter(env)) else GatewayConfig
    with pytest.raises(ConfigError) as info:
        config.load(Settings.from_env(env))
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_faas_config_lists_every_setting_and_the_readme_carries_them() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "app.cli", "config", "--markdown"], capture_output=True, text=True, cwd=ROOT, env={}
    )
    assert run.returncode == 0, run.stderr
    variables = [line.split("`")[1] for line in run.stdout.splitlines() if line.startswith("| `")]
    assert {"FAAS_GATEWAY_DEFAULT_MAX_TOKENS", "FAAS_CACHE_DEFAULT_TTL", "DATABASE_URL"} <= set(variables)
    readme = (ROOT / "README.md").read_text()
    missing = [v for v in variables if f"`{v}`" not in readme]
    assert not missing, f"README's configuration table lacks {missing}: paste `faas config --markdown` into it"


def test_faas_config_masks_secrets_and_stops_on_a_bad_value() -> None:
    env = {"FAAS_ADMIN_KEY": "a-very-secret-admin-key", "DATABASE_URL": "postgresql://u:hunter2@db:5432/x"}
    run = subprocess.run([sys.executable, "-m", "app.cli", "config"], capture_output=True, text=True, cwd=ROOT, env=env)
    assert run.returncode == 0 and "a-very-secret" not in run.stdout and "hunter2" not in run.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "app.cli", "config"], capture_output=True, text=True, cwd=ROOT, env={"FAAS_CACHE_X": "1"}
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "FAAS_CACHE_X" in bad.stderr
