"""The prompts service over HTTP: the same interface, served by the deployment at FAAS_PROMPTS_URL."""

from __future__ import annotations

from typing import Any

from app.remote import RemoteService
from plugins.prompts.schemas import (
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
    """`PromptsService` in remote mode; `describe()` and `ready()` come from `RemoteService`.

    Each call names its tenant explicitly (the signed X-Tenant-ID header).
    """

    def _as(self, tenant_id: str) -> dict[str, str]:
        return {"X-Tenant-ID": tenant_id}

    async def create_prompt(self, *, tenant_id: str, prompt: PromptCreate) -> PromptPublic:
        return await self.call("POST", "", PromptPublic, body=prompt, headers=self._as(tenant_id))

    async def list_prompts(self, *, tenant_id: str, limit: int = 20, cursor: str | None = None) -> PromptList:
        params = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        return await self.call("GET", "", PromptList, params=params, headers=self._as(tenant_id))

    async def get_prompt(self, *, tenant_id: str, name: str) -> PromptPublic:
        return await self.call("GET", f"/{name}", PromptPublic, headers=self._as(tenant_id))

    async def create_version(self, *, tenant_id: str, name: str, version: VersionCreate) -> VersionPublic:
        return await self.call("POST", f"/{name}/versions", VersionPublic, body=version, headers=self._as(tenant_id))

    async def move_label(self, *, tenant_id: str, name: str, label: str, version: int) -> LabelPublic:
        body = LabelMove(version=version)
        return await self.call("PUT", f"/{name}/labels/{label}", LabelPublic, body=body, headers=self._as(tenant_id))

    async def delete_prompt(self, *, tenant_id: str, name: str) -> None:
        await self.send("DELETE", f"/{name}", headers=self._as(tenant_id))

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
        return await self.call("POST", f"/{name}/render", RenderOut, body=body, headers=self._as(tenant_id))
