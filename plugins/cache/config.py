"""The cache plugin's settings (`FAAS_CACHE_*`): `faas config` lists them with their defaults.

0.95 is measured with the gateway's local all-MiniLM-L6-v2: "turn the alarm on" scores 0.927 against "turn the
alarm off" (as do other near-opposites: open/close the door 0.892, lock/unlock the car 0.846), while paraphrases
score above it ("turn off the alarm" 0.989, "switch the alarm off" 0.967, "how can I reset my password" against
"how do I reset my password" 0.991). Lower it and opposites start to match; the lexical guards in `llm.py`
(numbers, negation) hold whatever the threshold.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field

from app.config import SettingsGroup
from app.settings import ConfigError, Settings
from plugins.cache.schemas import MAX_TTL_SECONDS

DEFAULT_THRESHOLD = 0.95


class CacheConfig(SettingsGroup):
    group = "cache"

    backend: Literal["auto", "postgres", "redis"] = Field(
        default="auto", description="`postgres` or `redis`; `auto` is redis when REDIS_URL is set, else postgres"
    )
    redis_prefix: str = Field(default="faas:cache:", min_length=1, description="Prefix of every Redis key written")
    default_ttl: int = Field(
        default=86400, ge=1, le=MAX_TTL_SECONDS, description="Seconds an entry lives when a PUT names none"
    )
    max_value_bytes: int = Field(
        default=1024 * 1024, ge=16, le=64 * 1024 * 1024, description="Largest value (serialised JSON) a PUT stores"
    )
    semantic_threshold: float = Field(
        default=DEFAULT_THRESHOLD, ge=0.0, le=1.0, description="Default minimum cosine similarity of a semantic hit"
    )

    @classmethod
    def load(cls, settings: Settings) -> Self:
        config = super().load(settings)
        if config.backend == "redis" and not settings.redis_url:
            raise ConfigError(
                "FAAS_CACHE_BACKEND=redis needs REDIS_URL: set it, e.g. REDIS_URL=redis://127.0.0.1:6379/0"
            )
        return config

    def backend_for(self, redis_url: str | None) -> Literal["postgres", "redis"]:
        if self.backend == "auto":
            return "redis" if redis_url else "postgres"
        return self.backend
