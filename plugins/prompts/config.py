"""The prompts plugin's settings (`FAAS_PROMPTS_*`): `faas config` lists them with their defaults.

Workers are separate processes so that a template that runs away (time or memory) costs one worker, never the
event loop; simple templates of up to 4 KiB are rendered without them.
"""

from __future__ import annotations

from pydantic import Field

from app.config import SettingsGroup


class PromptsConfig(SettingsGroup):
    group = "prompts"

    render_workers: int = Field(
        default=2, ge=1, le=64, description="Template worker processes per server process, started on first use"
    )
    render_timeout_seconds: float = Field(
        default=1.0, ge=0.05, le=300.0, description="Time a render may take; past it its worker is killed (422)"
    )
    compile_timeout_seconds: float = Field(
        default=5.0, ge=0.05, le=300.0, description="Time compiling a version may take; past it its worker is killed"
    )
    render_memory_mb: int = Field(
        default=512, ge=64, le=64 * 1024, description="Memory a worker may add to its start-up size (422 past it)"
    )
    max_output_chars: int = Field(
        default=256 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        description="Characters one render may produce, all messages together (422 past it)",
    )
    render_queue_seconds: float = Field(
        default=5.0, ge=0.0, le=300.0, description="How long a render waits for a free worker before a 503"
    )
