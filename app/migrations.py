"""Alembic glue: apply migrations, and tell whether a database is at head.

`faas migrate` and the embedded start-up call `upgrade()`; the app's lifespan calls `pending()` and refuses to
serve a database whose schema is behind, naming `faas migrate` as the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from alembic.config import Config
from alembic.script import ScriptDirectory

if TYPE_CHECKING:
    from app.db import Database

ROOT = Path(__file__).resolve().parent.parent
SCRIPT_LOCATION = ROOT / "alembic"


def alembic_config(database_url: str) -> Config:
    from app.db import asyncpg_url

    cfg = Config(str(ROOT / "alembic.ini")) if (ROOT / "alembic.ini").is_file() else Config()
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    # ConfigParser interpolation would eat '%' in passwords.
    cfg.set_main_option("sqlalchemy.url", asyncpg_url(database_url).replace("%", "%%"))
    return cfg


def heads() -> set[str]:
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    return set(ScriptDirectory.from_config(cfg).get_heads())


def upgrade(database_url: str, revision: str = "heads") -> None:
    from alembic import command

    command.upgrade(alembic_config(database_url), revision)


async def current_revisions(db: Database) -> set[str]:
    """Revisions recorded in the database (empty when it was never migrated)."""
    exists = await db.fetch_val("SELECT to_regclass('public.alembic_version') IS NOT NULL")
    if not exists:
        return set()
    rows = await db.fetch_all("SELECT version_num FROM alembic_version")
    return {r["version_num"] for r in rows}


async def pending(db: Database) -> set[str]:
    """Heads the database has not reached yet (empty when the schema is current)."""
    return heads() - await current_revisions(db)
