"""SQL for prompts (`prompts_prompts`), their immutable versions (`prompts_versions`) and labels (`prompts_labels`).

There is no method that changes a version, and a trigger refuses an UPDATE of one. A new version takes its
number by incrementing the prompt's `latest_version` in the same transaction, so concurrent writers serialise
on the prompt's row and never share a number. `latest` is not stored: it is always `latest_version`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from app.codec import ascii_json, loads
from app.db import Database
from app.errors import Conflict, NotFound
from app.pagination import Page, decode_cursor, encode_cursor
from app.tenancy import new_id


@dataclass(frozen=True)
class PromptRow:
    id: str
    name: str
    type: str
    syntax: str
    latest_version: int
    labels: dict[str, int]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class VersionRow:
    prompt_id: str
    version: int
    template: Any
    variables: list[str]
    config: dict[str, Any] | None
    commit_message: str
    created_at: datetime


_PROMPT = (
    "SELECT p.id, p.name, p.type, p.syntax, p.latest_version, p.created_at, p.updated_at, "
    "coalesce((SELECT jsonb_object_agg(l.label, l.version) FROM prompts_labels l WHERE l.prompt_id = p.id), "
    "'{}'::jsonb) AS labels FROM prompts_prompts p"
)
_VERSION = "SELECT prompt_id, version, template, variables, config, commit_message, created_at FROM prompts_versions"


def _prompt(row: Any) -> PromptRow:
    labels = loads(row["labels"])
    labels["latest"] = row["latest_version"]
    return PromptRow(
        id=row["id"],
        name=row["name"],
        type=row["type"],
        syntax=row["syntax"],
        latest_version=row["latest_version"],
        labels=labels,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _version(row: Any) -> VersionRow:
    return VersionRow(
        prompt_id=row["prompt_id"],
        version=row["version"],
        template=loads(row["template"]),
        variables=loads(row["variables"]),
        config=loads(row["config"]) if row["config"] is not None else None,
        commit_message=loads(row["commit_message"]),
        created_at=row["created_at"],
    )


def _missing(name: str) -> NotFound:
    return NotFound(f"prompt {name!r} does not exist")


class PromptsStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert_prompt(self, *, tenant_id: str, name: str, type: str, syntax: str) -> str:
        prompt_id = new_id("prm")
        try:
            await self.db.execute(
                "INSERT INTO prompts_prompts (id, tenant_id, name, type, syntax) VALUES (:id, :t, :name, :type, :syn)",
                {"id": prompt_id, "t": tenant_id, "name": name, "type": type, "syn": syntax},
            )
        except asyncpg.UniqueViolationError:
            raise Conflict(f"a prompt named {name!r} already exists: add a version to it instead") from None
        return prompt_id

    async def insert_version(
        self,
        *,
        tenant_id: str,
        prompt_id: str,
        template: Any,
        variables: list[str],
        config: dict[str, Any] | None,
        commit_message: str,
    ) -> int:
        """Append the next version of the prompt (call inside a transaction) and return its number."""
        version = await self.db.fetch_val(
            "UPDATE prompts_prompts SET latest_version = latest_version + 1, updated_at = now() "
            "WHERE id = :id AND tenant_id = :t RETURNING latest_version",
            {"id": prompt_id, "t": tenant_id},
        )
        if version is None:
            raise NotFound("the prompt was deleted meanwhile")
        await self.db.execute(
            "INSERT INTO prompts_versions (prompt_id, tenant_id, version, template, variables, config, "
            "commit_message) VALUES (:p, :t, :v, :tpl, :vars, :cfg, :msg)",
            {
                "p": prompt_id,
                "t": tenant_id,
                "v": version,
                "tpl": ascii_json(template),
                "vars": ascii_json(variables),
                "cfg": None if config is None else ascii_json(config),
                "msg": ascii_json(commit_message),
            },
        )
        return int(version)

    async def get_prompt(self, *, tenant_id: str, name: str) -> PromptRow:
        row = await self.db.fetch_one(
            f"{_PROMPT} WHERE p.tenant_id = :t AND p.name = :name", {"t": tenant_id, "name": name}
        )
        if row is None:
            raise _missing(name)
        return _prompt(row)

    async def list_prompts(self, *, tenant_id: str, limit: int, cursor: str | None) -> Page[PromptRow]:
        after = decode_cursor(cursor)
        rows = await self.db.fetch_all(
            f"{_PROMPT} WHERE p.tenant_id = :t AND (CAST(:after AS text) IS NULL OR p.name > :after) "
            "ORDER BY p.name LIMIT :limit",
            {"t": tenant_id, "after": after, "limit": limit + 1},
        )
        items = [_prompt(r) for r in rows[:limit]]
        return Page(items, encode_cursor(items[-1].name) if len(rows) > limit else None)

    async def list_versions(
        self, *, tenant_id: str, prompt_id: str, limit: int, before: int | None = None
    ) -> Page[VersionRow]:
        """Versions newest first, `limit` at a time, older than `before` when given; the cursor is the last one's
        number."""
        rows = await self.db.fetch_all(
            f"{_VERSION} WHERE tenant_id = :t AND prompt_id = :p AND (CAST(:before AS integer) IS NULL "
            "OR version < :before) ORDER BY version DESC LIMIT :limit",
            {"t": tenant_id, "p": prompt_id, "before": before, "limit": limit + 1},
        )
        items = [_version(r) for r in rows[:limit]]
        return Page(items, str(items[-1].version) if len(rows) > limit else None)

    async def get_version(self, *, tenant_id: str, prompt_id: str, version: int) -> VersionRow | None:
        row = await self.db.fetch_one(
            f"{_VERSION} WHERE tenant_id = :t AND prompt_id = :p AND version = :v",
            {"t": tenant_id, "p": prompt_id, "v": version},
        )
        return None if row is None else _version(row)

    async def set_label(self, *, tenant_id: str, prompt_id: str, label: str, version: int) -> bool:
        """Point `label` at `version`; False when the prompt has no such version."""
        try:
            await self.db.execute(
                "INSERT INTO prompts_labels (prompt_id, tenant_id, label, version) VALUES (:p, :t, :l, :v) "
                "ON CONFLICT (prompt_id, label) DO UPDATE SET version = EXCLUDED.version, updated_at = now()",
                {"p": prompt_id, "t": tenant_id, "l": label, "v": version},
            )
        except asyncpg.ForeignKeyViolationError:
            return False
        return True

    async def delete_prompt(self, *, tenant_id: str, name: str) -> None:
        found = await self.db.fetch_val(
            "DELETE FROM prompts_prompts WHERE tenant_id = :t AND name = :name RETURNING id",
            {"t": tenant_id, "name": name},
        )
        if found is None:
            raise _missing(name)
