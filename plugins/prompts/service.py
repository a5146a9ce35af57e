"""The direct (in-process) prompts service, opened by `open_direct(ctx)` with its render workers.

Versions are immutable, so a parsed template is cached per replica under (tenant, prompt id, version):
the prompt id is new for every created prompt, so a prompt deleted and created again under the same name
never reuses an old entry. Labels move, so they are resolved in the database on every render. Compiling and
rendering happen in `PromptRenderer`: on the event loop only when provably cheap, otherwise in a worker process.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from app.db import Database
from app.errors import Conflict, InvalidInput, NotFound
from app.plugin_kit import LocalDescription, PluginInfo, Readiness
from app.plugins import PluginContext
from plugins.prompts.config import PromptsConfig
from plugins.prompts.renderer import PromptRenderer
from plugins.prompts.schemas import (
    LATEST,
    VERSION_CURSOR_PATTERN,
    VERSIONS_MAX_PAGE,
    VERSIONS_PAGE,
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


def _version_cursor(limit: int, cursor: str | None) -> int | None:
    """The version a page starts below, checked as the route's query schema would (for callers in-process)."""
    if not 1 <= limit <= VERSIONS_MAX_PAGE:
        raise InvalidInput(f"limit must be 1 to {VERSIONS_MAX_PAGE} versions per page")
    if cursor is None:
        return None
    if not re.fullmatch(VERSION_CURSOR_PATTERN, cursor):
        raise InvalidInput("cursor is not one this API issued: pass back versions_next_cursor unchanged")
    return int(cursor)


class DirectPromptsService:
    def __init__(self, *, db: Database, renderer: PromptRenderer, about: LocalDescription) -> None:
        self.store = PromptsStore(db)
        self.db = db
        self.renderer = renderer
        self._about = about

    async def describe(self) -> PluginInfo:
        return self._about.info()

    async def ready(self) -> Readiness:
        return {"ok": True}

    async def _compile(self, *, type: str, syntax: str, template: Any) -> list[str]:
        raw = template if isinstance(template, str) else [m.model_dump() for m in template]
        return await self.renderer.compile(type=type, syntax=syntax, template=raw)

    async def _append(
        self,
        *,
        tenant_id: str,
        prompt: PromptRow,
        body: VersionCreate | TextPromptCreate | ChatPromptCreate,
        variables: list[str] | None = None,
    ) -> int:
        if (prompt.type == "text") != isinstance(body.template, str):
            what = "a string" if prompt.type == "text" else "a list of messages"
            raise Conflict(f"prompt {prompt.name!r} is a {prompt.type} prompt: a version's template must be {what}")
        if variables is None:
            variables = await self._compile(type=prompt.type, syntax=prompt.syntax, template=body.template)
        for label in body.labels:
            _check_label(label)
        async with self.db.transaction():
            number = await self.store.insert_version(
                tenant_id=tenant_id,
                prompt_id=prompt.id,
                template=body.template if isinstance(body.template, str) else [m.model_dump() for m in body.template],
                variables=variables,
                config=None if body.config is None else body.config.model_dump(exclude_none=True),
                commit_message=body.commit_message,
            )
            for label in body.labels:
                await self.store.set_label(tenant_id=tenant_id, prompt_id=prompt.id, label=label, version=number)
        return number

    async def create_prompt(self, *, tenant_id: str, prompt: PromptCreate) -> PromptPublic:
        new = prompt.root
        # Compile (once) before inserting anything, so a refused template leaves no empty prompt behind.
        variables = await self._compile(type=new.type, syntax=new.syntax, template=new.template)
        async with self.db.transaction():
            await self.store.insert_prompt(tenant_id=tenant_id, name=new.name, type=new.type, syntax=new.syntax)
            row = await self.store.get_prompt(tenant_id=tenant_id, name=new.name)
            await self._append(tenant_id=tenant_id, prompt=row, body=new, variables=variables)
        return await self.get_prompt(tenant_id=tenant_id, name=new.name)

    async def list_prompts(self, *, tenant_id: str, limit: int = 20, cursor: str | None = None) -> PromptList:
        page = await self.store.list_prompts(tenant_id=tenant_id, limit=limit, cursor=cursor)
        return PromptList(data=[_summary(r) for r in page.items], next_cursor=page.next_cursor)

    async def get_prompt(
        self, *, tenant_id: str, name: str, limit: int = VERSIONS_PAGE, cursor: str | None = None
    ) -> PromptPublic:
        row = await self.store.get_prompt(tenant_id=tenant_id, name=name)
        before = _version_cursor(limit, cursor)
        page = await self.store.list_versions(tenant_id=tenant_id, prompt_id=row.id, limit=limit, before=before)
        return PromptPublic(
            **_summary(row).model_dump(),
            versions=[_version(v) for v in page.items],
            versions_next_cursor=page.next_cursor,
        )

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
        out = await self.renderer.render(
            key=(tenant_id, row.id, found.version),
            type=row.type,
            syntax=row.syntax,
            template=found.template,
            variables=found.variables,
            values=variables,
            strict=strict,
        )
        return RenderOut(
            name=name,
            version=found.version,
            type=row.type,  # type: ignore[arg-type]
            text=out.text,
            messages=out.messages,  # type: ignore[arg-type]
            config=None if found.config is None else ModelConfig.model_validate(found.config),
            unknown_variables=out.unknown,
        )


def _check_label(label: str) -> None:
    if label == LATEST:
        raise InvalidInput("the label `latest` always points at the newest version and cannot be moved")


@asynccontextmanager
async def open_direct(ctx: PluginContext) -> AsyncIterator[DirectPromptsService]:
    """The direct service with its render workers (started on first use), stopped when the service closes."""
    renderer = PromptRenderer(PromptsConfig.load(ctx.settings))
    try:
        yield DirectPromptsService(db=ctx.db, renderer=renderer, about=LocalDescription(ctx, CAPABILITIES))
    finally:
        await renderer.aclose()
