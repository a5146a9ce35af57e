"""The CLI says where its data is, and does not start a second, empty embedded database by accident.

`FAAS_DATA_DIR` is relative to the working directory by default (`./var`): a command run from another folder used
to create a new database there and print a key the running server did not know."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

from tests.test_cli import base_env, run


def test_a_command_run_elsewhere_refuses_to_create_a_database_and_names_the_path(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for command in (["tenants", "create", "acme"], ["migrate"]):
        r = run(command, base_env(), cwd=elsewhere)
        assert r.returncode == 2, (command, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("faas: no embedded database at "), (command, r.stderr)
        assert str(elsewhere / "var" / "pg") in lines[0] and "--create" in lines[0]
    assert list(elsewhere.iterdir()) == [], "nothing was created"


def test_migrate_create_makes_the_database_and_every_command_says_where_it_is(tmp_path: Path) -> None:
    env = base_env(FAAS_DATA_DIR="data")  # relative, as the default is: the output names it absolute
    where = f"embedded PostgreSQL in {tmp_path / 'data' / 'pg'}"
    r = run(["migrate", "--create"], env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert where in r.stderr
    try:
        r = run(["tenants", "create", "acme", "--json"], env, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["name"] == "acme"
        assert f"faas: database: {where}" in r.stderr.splitlines()
        r = run(["config"], env, cwd=tmp_path)
        assert r.returncode == 0 and f"faas: database: {where}" in r.stderr.splitlines(), r.stderr
    finally:
        # Each command stopped the server it started as it left; nothing may run on.
        assert not (tmp_path / "data" / "pg" / "postmaster.pid").exists()


def test_a_database_url_is_named_without_its_credentials(database_url: str, tmp_path: Path) -> None:
    secret_url = database_url.replace("postgres:@", "postgres:hunter2-pw@", 1)
    assert "hunter2-pw" in secret_url
    r = run(["tenants", "create", "acme"], base_env(DATABASE_URL=secret_url), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    name = urlsplit(database_url).path
    line = next(x for x in r.stderr.splitlines() if x.startswith("faas: database: PostgreSQL at "))
    assert line.split(" at ", 1)[1].endswith(name) and "hunter2" not in r.stderr and "postgres:" not in line
