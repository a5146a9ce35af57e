"""The prompts plugin: prompt templates with immutable versions and labels, and rendering."""

from __future__ import annotations

from app.plugins import Plugin
from app.remote import remote_factory
from plugins.prompts.api import routes
from plugins.prompts.remote import RemotePromptsService
from plugins.prompts.service import open_direct

plugin = Plugin(
    name="prompts",
    requires=(),
    direct=open_direct,
    remote=remote_factory(RemotePromptsService),
    routes=routes,
    description="Prompt templates with immutable versions and labels, and rendering",
)
