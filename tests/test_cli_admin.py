"""The `faas` command as an operator meets it: `--version`, help that shows every default, what `serve` logs, and
tenant and key administration against a real database (in-process for the commands, a real process for `serve`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
from collections.abc import Iterator
from importlib.metadata import version

import pytest

from app.cli import main, parser
from app.main import create_app
from tests.harness import asgi_client, make_settings
from tests.lifespan import lifespan
from tests.test_cli import FAAS, base_env, free_port, wait_ready


def test_serve_announces_serving_once(database_url: str) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [*FAAS, "serve", "--port", str(port)],
        env=base_env(DATABASE_URL=database_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    serving = [line for line in map(json.loads, err.strip().splitlines()) if line["msg"] == "serving"]
    assert len(serving) == 1, serving  # the check before uvicorn starts opens everything too, silently
    assert serving[0]["plugins"] and serving[0]["modes"]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"faas {version('motadata-faas')}"


def _parsers(p: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield p
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _parsers(child)


def test_every_option_has_help_and_shows_its_default() -> None:
    commands = list(_parsers(parser()))
    assert {c.prog for c in commands} >= {"faas serve", "faas tenants list", "faas keys create", "faas keys revoke"}
    for command in commands:
        text = " ".join(command.format_help().split())
        for action in command._actions:
            assert action.help, (command.prog, action.dest)
            valued = action.option_strings and action.nargs != 0 and action.default is not argparse.SUPPRESS
            if valued:  # an option that takes a value says what it is when not given
                shown = "none" if action.default == "" else str(action.default)
                assert f"(default: {shown})" in text, (command.prog, action.dest, text)


def test_tenants_and_keys_from_the_command_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    code, out, _ = _run(capsys, "tenants", "create", "acme-cli", "--json")
    assert code == 0
    acme = json.loads(out)
    code, out, _ = _run(capsys, "tenants", "create", "zeta")
    assert code == 0 and "created" in out and "faas_" in out
    code, out, _ = _run(capsys, "tenants", "list", "--json")
    listed = json.loads(out)
    assert code == 0 and [t["name"] for t in sorted(listed, key=lambda t: t["name"])] == ["acme-cli", "zeta"]
    assert set(listed[0]) == {"tenant_id", "name", "created_at"}  # the admin API's shape, no secrets
    code, out, _ = _run(capsys, "tenants", "list")
    assert out.splitlines()[0].split() == ["TENANT", "NAME", "CREATED"] and acme["tenant_id"] in out

    # A second key, by tenant name; listed by id; revoked.
    code, out, _ = _run(capsys, "keys", "create", "acme-cli", "--name", "ci", "--json")
    second = json.loads(out)
    assert code == 0 and second["tenant_id"] == acme["tenant_id"] and second["api_key"].startswith("faas_")
    code, out, _ = _run(capsys, "keys", "list", acme["tenant_id"], "--json")
    keys = json.loads(out)
    assert code == 0 and [k["name"] for k in keys] == ["default", "ci"]
    assert all("api_key" not in k and k["revoked_at"] is None for k in keys)
    code, out, _ = _run(capsys, "keys", "revoke", "acme-cli", second["key_id"])
    assert code == 0 and "revoked" in out
    code, out, _ = _run(capsys, "keys", "list", "acme-cli")
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert rows[second["key_id"]].split()[-1] != "-" and rows[acme["key_id"]].split()[-1] == "-"

    async def answers() -> list[int]:
        app = create_app(make_settings(database_url))
        async with lifespan(app) as m, asgi_client(m.app) as c:
            url = "/api/v1/prompts/-/info"
            return [
                (await c.get(url, headers={"authorization": f"Bearer {key}"})).status_code
                for key in (acme["api_key"], second["api_key"])
            ]

    assert asyncio.run(answers()) == [200, 403]  # the server sees what the command line did


@pytest.mark.parametrize(
    ("argv", "code", "fragment"),
    [
        (["keys", "list", "nobody"], 1, "no tenant has the id or name 'nobody'"),
        (["keys", "revoke", "acme-cli", "key_0000000000000000"], 1, "does not exist"),
        (["tenants", "create", "acme-cli"], 1, "already exists"),
        (["tenants", "create", " padded"], 2, "name"),
        (["keys", "create", "acme-cli", "--name", "a\x00b"], 2, "name"),
    ],
)
def test_refusals_are_one_line(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    argv: list[str],
    code: int,
    fragment: str,
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert _run(capsys, "tenants", "create", "acme-cli")[0] == 0
    got, out, err = _run(capsys, *argv)
    assert got == code and out == "" and err.count("\n") == 1 and err.startswith("faas: ") and fragment in err, err
    _, out, _ = _run(capsys, "tenants", "list", "--json")
    assert [t["name"] for t in json.loads(out)] == ["acme-cli"]  # nothing half-created
