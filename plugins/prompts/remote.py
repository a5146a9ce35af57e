"""`PromptsService` over HTTP: the same routes and schemas, served by the deployment at FAAS_PROMPTS_URL."""

from __future__ import annotations

from typing import Any

from app.remote import RemoteService, remote_factory
from plugins.prompts.schemas import (
    VERSIONS_PAGE,
    LabelMove,
    LabelPublic,
    PromptCreate,
    PromptList,
    PromptPublic,
    RenderIn,
    RenderOut,
    VersionCreate,
    VersionPublic,
)


class RemotePromptsService(RemoteService):
    """No feature methods yet: `describe` and `ready` come from `RemoteService`."""

    async def create_prompt(self, *, tenant_id: str, prompt: PromptCreate) -> PromptPublic:
        return await self._client.call("POST", "", PromptPublic, tenant_id=tenant_id, body=prompt)

    async def list_prompts(self, *, tenant_id: str, limit: int = 20, cursor: str | None = None) -> PromptList:
        params = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        return await self._client.call("GET", "", PromptList, tenant_id=tenant_id, params=params)

    async def get_prompt(
        self, *, tenant_id: str, name: str, limit: int = VERSIONS_PAGE, cursor: str | None = None
    ) -> PromptPublic:
        params = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        return await self._client.call("GET", f"/{name}", PromptPublic, tenant_id=tenant_id, params=params)

    async def create_version(self, *, tenant_id: str, name: str, version: VersionCreate) -> VersionPublic:
        return await self._client.call("POST", f"/{name}/versions", VersionPublic, tenant_id=tenant_id, body=version)

    async def move_label(self, *, tenant_id: str, name: str, label: str, version: int) -> LabelPublic:
        body = LabelMove(version=version)
        return await self._client.call("PUT", f"/{name}/labels/{label}", LabelPublic, tenant_id=tenant_id, body=body)

    async def delete_prompt(self, *, tenant_id: str, name: str) -> None:
        await self._client.send("DELETE", f"/{name}", tenant_id=tenant_id)

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
        body = RenderIn(label=label, version=version, variables=variables, strict=strict)
        return await self._client.call("POST", f"/{name}/render", RenderOut, tenant_id=tenant_id, body=body)


open_remote = remote_factory(RemotePromptsService)
