"""The prompts plugin's settings (`FAAS_PROMPTS_*`), validated when the service opens.

| variable | meaning | default |
|---|---|---|
| `FAAS_PROMPTS_RENDER_WORKERS` | template worker processes per server process, started on first use | 2 |
| `FAAS_PROMPTS_RENDER_TIMEOUT_SECONDS` | time a render may take; past it its worker is killed (422) | 1.0 |
| `FAAS_PROMPTS_COMPILE_TIMEOUT_SECONDS` | time compiling a version may take; past it its worker is killed (422) | 5.0 |
| `FAAS_PROMPTS_RENDER_MEMORY_MB` | memory a worker may add to its start-up size (address space; 422 past it) | 512 |
| `FAAS_PROMPTS_MAX_OUTPUT_CHARS` | characters one render may produce, all messages together (422 past it) | 262144 |
| `FAAS_PROMPTS_RENDER_QUEUE_SECONDS` | how long a render waits for a free worker before a 503 with Retry-After | 5.0 |

Workers are separate processes so that a template that runs away (time or memory) costs one worker, never the
event loop; simple templates of up to 4 KiB are rendered without them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from app.settings import ConfigError, Settings

N = TypeVar("N", int, float)


@dataclass(frozen=True)
class PromptsConfig:
    render_workers: int = 2
    render_timeout: float = 1.0
    compile_timeout: float = 5.0
    render_memory_mb: int = 512
    max_output_chars: int = 256 * 1024
    queue_seconds: float = 5.0

    @classmethod
    def from_settings(cls, settings: Settings) -> PromptsConfig:
        d = cls()
        return cls(
            render_workers=_number(settings, "RENDER_WORKERS", d.render_workers, 1, 64, int),
            render_timeout=_number(settings, "RENDER_TIMEOUT_SECONDS", d.render_timeout, 0.05, 300.0, float),
            compile_timeout=_number(settings, "COMPILE_TIMEOUT_SECONDS", d.compile_timeout, 0.05, 300.0, float),
            render_memory_mb=_number(settings, "RENDER_MEMORY_MB", d.render_memory_mb, 64, 64 * 1024, int),
            max_output_chars=_number(settings, "MAX_OUTPUT_CHARS", d.max_output_chars, 1024, 64 * 1024 * 1024, int),
            queue_seconds=_number(settings, "RENDER_QUEUE_SECONDS", d.queue_seconds, 0.0, 300.0, float),
        )


def _number(settings: Settings, name: str, default: N, low: N, high: N, kind: type[N]) -> N:
    raw = settings.plugin_env("prompts", name)
    var = f"FAAS_PROMPTS_{name}"
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{var}={raw!r} is not a number: use e.g. {var}={default}") from None
    if not low <= value <= high:
        raise ConfigError(f"{var}={value} is out of range: use a value from {low} to {high}")
    return value
