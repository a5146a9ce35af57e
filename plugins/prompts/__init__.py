"""The prompts plugin: prompt templates with immutable versions and labels, and rendering."""

from __future__ import annotations

from app.plugins import Plugin
from plugins.prompts.api import routes
from plugins.prompts.config import PromptsConfig
from plugins.prompts.interface import PROMPTS, PromptsService
from plugins.prompts.remote import open_remote
from plugins.prompts.service import open_direct

plugin: Plugin[PromptsService] = Plugin(
    key=PROMPTS,
    direct=open_direct,
    remote=open_remote,
    config=PromptsConfig,
    routes=routes,
    description="Prompt templates with immutable versions and labels, and rendering",
)
