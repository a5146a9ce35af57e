"""The cache plugin's settings (`FAAS_CACHE_*`), validated when the service opens.

| variable | meaning | default |
|---|---|---|
| `FAAS_CACHE_BACKEND` | `postgres` or `redis` | `redis` when `REDIS_URL` is set, else `postgres` |
| `FAAS_CACHE_REDIS_PREFIX` | prefix of every Redis key this plugin writes | `faas:cache:` |
| `FAAS_CACHE_DEFAULT_TTL` | seconds an entry lives when a PUT names no `ttl_seconds` | 86400 |
| `FAAS_CACHE_MAX_VALUE_BYTES` | largest value (serialised JSON) a PUT may store | 1048576 |
| `FAAS_CACHE_SEMANTIC_THRESHOLD` | default minimum cosine similarity of a semantic hit | 0.95 |

0.95 is measured with the gateway's local all-MiniLM-L6-v2: "turn the alarm on" scores 0.927 against "turn the
alarm off" (as do other near-opposites: open/close the door 0.892, lock/unlock the car 0.846), while paraphrases
score above it ("turn off the alarm" 0.989, "switch the alarm off" 0.967, "how can I reset my password" against
"how do I reset my password" 0.991). Lower it and opposites start to match; the lexical guards in `llm.py`
(numbers, negation) hold whatever the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from app.settings import ConfigError, Settings
from plugins.cache.schemas import MAX_TTL_SECONDS

DEFAULT_THRESHOLD = 0.95
N = TypeVar("N", int, float)


@dataclass(frozen=True)
class CacheConfig:
    backend: str
    redis_url: str | None
    redis_prefix: str
    default_ttl: int
    max_value_bytes: int
    semantic_threshold: float

    @classmethod
    def from_settings(cls, settings: Settings) -> CacheConfig:
        backend = (settings.plugin_env("cache", "BACKEND") or ("redis" if settings.redis_url else "postgres")).lower()
        if backend not in ("postgres", "redis"):
            raise ConfigError(f"FAAS_CACHE_BACKEND={backend!r} is not a cache backend: use postgres or redis")
        if backend == "redis" and not settings.redis_url:
            raise ConfigError(
                "FAAS_CACHE_BACKEND=redis needs REDIS_URL: set it, e.g. REDIS_URL=redis://127.0.0.1:6379/0"
            )
        prefix = settings.plugin_env("cache", "REDIS_PREFIX", "faas:cache:") or "faas:cache:"
        return cls(
            backend=backend,
            redis_url=settings.redis_url,
            redis_prefix=prefix,
            default_ttl=_number(settings, "DEFAULT_TTL", 86400, 1, MAX_TTL_SECONDS, int),
            max_value_bytes=_number(settings, "MAX_VALUE_BYTES", 1024 * 1024, 16, 64 * 1024 * 1024, int),
            semantic_threshold=_number(settings, "SEMANTIC_THRESHOLD", DEFAULT_THRESHOLD, 0.0, 1.0, float),
        )


def _number(settings: Settings, name: str, default: N, low: N, high: N, kind: type[N]) -> N:
    raw = settings.plugin_env("cache", name)
    var = f"FAAS_CACHE_{name}"
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{var}={raw!r} is not a number: use e.g. {var}={default}") from None
    if not low <= value <= high:
        raise ConfigError(f"{var}={value} is out of range: use a value from {low} to {high}")
    return value
