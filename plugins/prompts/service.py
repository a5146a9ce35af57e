"""The direct (in-process) prompts service, opened by `open_direct(ctx)`.

Versions are immutable, so a compiled template is cached per replica under (tenant, prompt id, version):
the prompt id is new for every created prompt, so a prompt deleted and created again under the same name
never reuses an old entry. Labels move, so they are resolved in the database on every render.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from cachetools import LRUCache

from app.db import Database
from app.errors import Conflict, InvalidInput, NotFound
from app.plugin_kit import LocalDescription, PluginInfo, Readiness
from app.plugins import PluginContext
from plugins.prompts.sandbox import PromptSandbox
from plugins.prompts.schemas import (
    LATEST,
    ChatPromptCreate,
    LabelPublic,
    ModelConfig,
    PromptCreate,
    PromptList,
    PromptPublic,
    PromptSummary,
    RenderOut,
    TextPromptCreate,
    VersionCreate,
    VersionPublic,
)
from plugins.prompts.store import PromptRow, PromptsStore, VersionRow
from plugins.prompts.templates import CompiledPrompt, compile_prompt, render_prompt

COMPILED_CACHE_SIZE = 512
CAPABILITIES = ("text", "chat", "syntax:simple", "syntax:jinja2")


def _version(row: VersionRow) -> VersionPublic:
    return VersionPublic(
        version=row.version,
        template=row.template,
        variables=row.variables,
        config=None if row.config is None else ModelConfig.model_validate(row.config),
        commit_message=row.commit_message,
        created_at=row.created_at,
    )


def _summary(row: PromptRow) -> PromptSummary:
    return PromptSummary(
        name=row.name,
        type=row.type,  # type: ignore[arg-type]
        syntax=row.syntax,  # type: ignore[arg-type]
        latest_version=row.latest_version,
        labels=row.labels,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


class DirectPromptsService:
    def __init__(self, *, db: Database, about: LocalDescription) -> None:
        self.store = PromptsStore(db)
        self.db = db
        self.env = PromptSandbox()
        self._about = about
        self._compiled: LRUCache[tuple[str, str, int], CompiledPrompt] = LRUCache(COMPILED_CACHE_SIZE)

    async def describe(self) -> PluginInfo:
        return self._about.info()

    async def ready(self) -> Readiness:
        return {"ok": True}

    def _compile(self, *, type: str, syntax: str, template: Any) -> CompiledPrompt:
        raw = template if isinstance(template, str) else [m.model_dump() for m in template]
        return compile_prompt(self.env, type=type, syntax=syntax, template=raw)

    async def _append(
        self, *, tenant_id: str, prompt: PromptRow, body: VersionCreate | TextPromptCreate | ChatPromptCreate
    ) -> int:
        if (prompt.type == "text") != isinstance(body.template, str):
            what = "a string" if prompt.type == "text" else "a list of messages"
            raise Conflict(f"prompt {prompt.name!r} is a {prompt.type} prompt: a version's template must be {what}")
        compiled = self._compile(type=prompt.type, syntax=prompt.syntax, template=body.template)
        for label in body.labels:
            _check_label(label)
        async with self.db.transaction():
            number = await self.store.insert_version(
                tenant_id=tenant_id,
                prompt_id=prompt.id,
                template=body.template if isinstance(body.template, str) else [m.model_dump() for m in body.template],
                variables=compiled.variables,
                config=None if body.config is None else body.config.model_dump(exclude_none=True),
                commit_message=body.commit_message,
            )
            for label in body.labels:
                await self.store.set_label(tenant_id=tenant_id, prompt_id=prompt.id, label=label, version=number)
        return number

    async def create_prompt(self, *, tenant_id: str, prompt: PromptCreate) -> PromptPublic:
        new = prompt.root
        # Compile before inserting anything, so a refused template leaves no empty prompt behind.
        self._compile(type=new.type, syntax=new.syntax, template=new.template)
        async with self.db.transaction():
            await self.store.insert_prompt(tenant_id=tenant_id, name=new.name, type=new.type, syntax=new.syntax)
            row = await self.store.get_prompt(tenant_id=tenant_id, name=new.name)
            await self._append(tenant_id=tenant_id, prompt=row, body=new)
        return await self.get_prompt(tenant_id=tenant_id, name=new.name)

    async def list_prompts(self, *, tenant_id: str, limit: int = 20, cursor: str | None = None) -> PromptList:
        page = await self.store.list_prompts(tenant_id=tenant_id, limit=limit, cursor=cursor)
        return PromptList(data=[_summary(r) for r in page.items], next_cursor=page.next_cursor)

    async def get_prompt(self, *, tenant_id: str, name: str) -> PromptPublic:
        row = await self.store.get_prompt(tenant_id=tenant_id, name=name)
        versions = await self.store.list_versions(tenant_id=tenant_id, prompt_id=row.id)
        return PromptPublic(**_summary(row).model_dump(), versions=[_version(v) for v in versions])

    async def create_version(self, *, tenant_id: str, name: str, version: VersionCreate) -> VersionPublic:
        row = await self.store.get_prompt(tenant_id=tenant_id, name=name)
        number = await self._append(tenant_id=tenant_id, prompt=row, body=version)
        created = await self.store.get_version(tenant_id=tenant_id, prompt_id=row.id, version=number)
        assert created is not None
        return _version(created)

    async def move_label(self, *, tenant_id: str, name: str, label: str, version: int) -> LabelPublic:
        _check_label(label)
        row = await self.store.get_prompt(tenant_id=tenant_id, name=name)
        if not await self.store.set_label(tenant_id=tenant_id, prompt_id=row.id, label=label, version=version):
            raise NotFound(f"prompt {name!r} has no version {version} (latest is {row.latest_version})")
        return LabelPublic(name=name, label=label, version=version)

    async def delete_prompt(self, *, tenant_id: str, name: str) -> None:
        await self.store.delete_prompt(tenant_id=tenant_id, name=name)

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
        row = await self.store.get_prompt(tenant_id=tenant_id, name=name)
        if version is None:
            label = label or LATEST
            if label not in row.labels:
                raise NotFound(f"prompt {name!r} has no label {label!r} (labels: {', '.join(sorted(row.labels))})")
            version = row.labels[label]
        found = await self.store.get_version(tenant_id=tenant_id, prompt_id=row.id, version=version)
        if found is None:
            raise NotFound(f"prompt {name!r} has no version {version} (latest is {row.latest_version})")
        compiled = self._cached(tenant_id, row, found)
        out = await render_prompt(compiled, variables, strict=strict)
        return RenderOut(
            name=name,
            version=found.version,
            type=row.type,  # type: ignore[arg-type]
            text=out.text,
            messages=out.messages,  # type: ignore[arg-type]
            config=None if found.config is None else ModelConfig.model_validate(found.config),
            unknown_variables=out.unknown,
        )

    def _cached(self, tenant_id: str, row: PromptRow, found: VersionRow) -> CompiledPrompt:
        key = (tenant_id, row.id, found.version)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = compile_prompt(
                self.env, type=row.type, syntax=row.syntax, template=found.template
            )
        return compiled


def _check_label(label: str) -> None:
    if label == LATEST:
        raise InvalidInput("the label `latest` always points at the newest version and cannot be moved")


@asynccontextmanager
async def open_direct(ctx: PluginContext) -> AsyncIterator[DirectPromptsService]:
    yield DirectPromptsService(db=ctx.db, about=LocalDescription(ctx, CAPABILITIES))
