"""Migration 0005_jobs applies the installed procrastinate's schema and records its version: a database at head has
exactly the queue schema of the procrastinate this project pins (a pin moved without a migration fails here)."""

from __future__ import annotations

from importlib import metadata

from tests.app.jobs.conftest import sql


async def test_the_queue_schema_is_the_installed_procrastinates(database_url: str) -> None:
    rows = await sql(database_url, "SELECT procrastinate_version FROM jobs_queue_schema")
    assert [r["procrastinate_version"] for r in rows] == [metadata.version("procrastinate")], (
        "procrastinate moved off its pin: add a migration applying its migration scripts since the recorded version"
    )
    functions = await sql(database_url, "SELECT count(*) AS n FROM pg_proc WHERE proname LIKE 'procrastinate_%'")
    assert functions[0]["n"] > 10
