"""The prompts plugin: prompt templates with immutable versions and labels, and rendering."""

from __future__ import annotations

from app.plugin_kit import direct_factory
from app.plugins import Plugin
from plugins.prompts.api import routes
from plugins.prompts.service import DirectPromptsService

plugin = Plugin(
    name="prompts",
    requires=(),
    direct=direct_factory(DirectPromptsService),
    routes=routes,
    description="Prompt templates with immutable versions and labels, and rendering",
)
