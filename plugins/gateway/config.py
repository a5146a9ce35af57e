"""The gateway's settings (`FAAS_GATEWAY_*`): `faas config` lists them with their defaults.

The model map (`FAAS_GATEWAY_CONFIG`) is checked here for existence; its content is checked when the catalog is
built, before the app serves, with one line naming the file, the field and the fix.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from app.config import SettingsGroup


class GatewayConfig(SettingsGroup):
    group = "gateway"

    config: Path | None = Field(
        default=None,
        description="Model map (YAML or JSON): public model names to provider deployments. Unset: built from "
        "OPENAI_API_KEY / OPENAI_BASE_URL / ANTHROPIC_API_KEY",
    )
    mock_model: bool = Field(
        default=True,
        description="Serve the offline chat model `mock-1` (it echoes; it costs nothing) beside any configured "
        "provider; `off` removes it",
    )
    default_max_tokens: int = Field(
        default=1024, ge=1, description="Completion tokens reserved (and sent) when a request names no limit"
    )
    breaker_fail_max: int = Field(default=5, ge=1, description="Consecutive failures that open a deployment's breaker")
    breaker_reset_seconds: float = Field(default=30.0, ge=0.01, description="Seconds a breaker stays open")
    ledger_wait_seconds: float = Field(
        default=5.0,
        ge=0.01,
        description="How long an answer waits for its usage to be committed; past it the answer is withheld (503)",
    )
    models_ttl_seconds: float = Field(
        default=300.0,
        ge=0.0,
        description="How long a provider's model list is kept (a failed listing is tried again after 1 s, 2 s, 4 s "
        "... up to 30 s)",
    )
    max_connections: int = Field(default=512, ge=1, description="Connections to all providers together")
    usage_retention_days: int = Field(
        default=0,
        ge=0,
        le=36_500,
        description="Days of per-request usage rows kept (0: forever); the daily totals that reports read are kept "
        "whatever this says",
    )
    redis_prefix: str = Field(default="faas:gw", min_length=1, description="Prefix of the Redis rate-limit keys")

    @field_validator("config")
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError("not a readable file: point it at the gateway model map, or unset it")
        return value
