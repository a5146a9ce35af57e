"""Migration 0005_jobs applies a copy of procrastinate's schema: it must be the installed version's, unchanged."""

from __future__ import annotations

from importlib import metadata, resources
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_the_schema_copy_is_the_installed_procrastinates() -> None:
    copy = ROOT / "alembic" / "sql" / f"procrastinate-{metadata.version('procrastinate')}.sql"
    assert copy.is_file(), "procrastinate moved off its pin: add a migration for the new version's schema changes"
    installed = (resources.files("procrastinate.sql") / "schema.sql").read_text(encoding="utf-8")
    assert copy.read_text(encoding="utf-8") == installed
