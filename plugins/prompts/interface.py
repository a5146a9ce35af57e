"""The prompts service's contract: `PromptsService`, the one module another plugin may import (for types).

Other plugins reach it as `services.get(PROMPTS)`; the request and response types it takes are re-exported here.
"""

from __future__ import annotations

from typing import Any, Protocol

from app.plugin_kit import PluginService
from app.plugins import ServiceKey
from plugins.prompts.schemas import (
    VERSIONS_PAGE,
    LabelPublic,
    PromptCreate,
    PromptList,
    PromptPublic,
    RenderOut,
    VersionCreate,
    VersionPublic,
)

__all__ = [
    "PROMPTS",
    "LabelPublic",
    "PromptCreate",
    "PromptList",
    "PromptPublic",
    "PromptsService",
    "RenderOut",
    "VersionCreate",
    "VersionPublic",
]


class PromptsService(PluginService, Protocol):
    """What the prompts plugin offers to endpoints and to other plugins, in either mode.

    Every method is scoped to `tenant_id`; another tenant's prompt answers NotFound.
    """

    async def create_prompt(self, *, tenant_id: str, prompt: PromptCreate) -> PromptPublic:
        """Create a prompt with its version 1 (Conflict if the name is taken, TemplateRefused if it is invalid)."""
        ...

    async def list_prompts(self, *, tenant_id: str, limit: int = 20, cursor: str | None = None) -> PromptList:
        """Prompts by name, a page at a time."""
        ...

    async def get_prompt(
        self, *, tenant_id: str, name: str, limit: int = VERSIONS_PAGE, cursor: str | None = None
    ) -> PromptPublic:
        """The prompt with its labels and a page of `limit` versions, newest first; `cursor` (the previous page's
        `versions_next_cursor`) continues with older ones. InvalidInput (422) for a cursor or limit the
        `VersionPageQuery` schema refuses."""
        ...

    async def create_version(self, *, tenant_id: str, name: str, version: VersionCreate) -> VersionPublic:
        """Append a new immutable version; `latest` moves to it, other labels only if listed. Conflict (409) when
        the template is of the other shape than the prompt's type (a string for text, messages for chat)."""
        ...

    async def move_label(self, *, tenant_id: str, name: str, label: str, version: int) -> LabelPublic:
        """Point `label` at `version` (creating the label). `latest` cannot be moved."""
        ...

    async def delete_prompt(self, *, tenant_id: str, name: str) -> None:
        """Delete the prompt with its versions and labels."""
        ...

    async def render(
        self,
        *,
        tenant_id: str,
        name: str,
        label: str | None = None,
        version: int | None = None,
        variables: dict[str, Any],
        strict: bool = True,
    ) -> RenderOut:
        """Render a version (by number, or by label; neither means `latest`) with `variables`.

        TemplateVariablesError (400) names missing variables, and unknown ones unless `strict` is False
        (then they are listed in `unknown_variables`). TemplateRefused (422) when the sandbox stops the template,
        RenderLimitExceeded (422) past the output size or time limit.
        """
        ...


PROMPTS: ServiceKey[PromptsService] = ServiceKey("prompts")
