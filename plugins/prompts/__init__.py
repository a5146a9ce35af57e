"""The prompts plugin: prompt templates with immutable versions and labels, and rendering."""

from __future__ import annotations

from app.plugin_kit import direct_factory
from app.plugins import Plugin
from app.remote import remote_factory
from plugins.prompts.api import routes
from plugins.prompts.remote import RemotePromptsService
from plugins.prompts.service import DirectPromptsService

plugin = Plugin(
    name="prompts",
    requires=(),
    direct=direct_factory(DirectPromptsService),
    remote=remote_factory(RemotePromptsService),
    routes=routes,
    description="Prompt templates with immutable versions and labels, and rendering",
)
