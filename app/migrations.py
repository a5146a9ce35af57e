"""Alembic glue: apply migrations, and tell whether a database is at head.

`faas migrate` and the embedded start-up call `upgrade()`; the app's lifespan reads `heads()` once, calls
`pending()` and refuses to serve a database whose schema is behind, naming `faas migrate` as the fix;
/health/ready compares the same heads with `current_revisions()`.
"""

from __future__ import annotations

from collections.abc import Set
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
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
    """Revisions recorded in the database (empty when it was never migrated): one round trip."""
    try:
        rows = await db.fetch_all("SELECT version_num FROM alembic_version")
    except asyncpg.exceptions.UndefinedTableError:
        return set()
    return {r["version_num"] for r in rows}


async def pending(db: Database, want: Set[str] | None = None) -> set[str]:
    """Heads the database has not reached yet (empty when the schema is current). `want` is `heads()` when the
    caller has it already: reading the migration scripts costs far more than the query."""
    return set(heads() if want is None else want) - await current_revisions(db)
