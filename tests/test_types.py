"""The seams are typed, and the types are checked: mypy --strict passes on app/, plugins/ and tests/, and it is
what proves each plugin's direct and remote implementation satisfy its interface (a `Plugin[S]` takes only
factories of an `S`), as a remote class missing one interface method shows."""

from __future__ import annotations

from pathlib import Path

from mypy import api

ROOT = Path(__file__).resolve().parent.parent

BROKEN_REMOTE = """
from app.plugins import Plugin
from app.remote import remote_factory
from plugins.prompts.interface import PROMPTS, PromptsService
from plugins.prompts.remote import RemotePromptsService
from plugins.prompts.service import open_direct


class Forgetful(RemotePromptsService):
    render = None  # type: ignore[assignment]


broken: Plugin[PromptsService] = Plugin(key=PROMPTS, direct=open_direct, remote=remote_factory(Forgetful))
"""


def test_mypy_strict_passes_on_the_whole_project() -> None:
    out, err, status = api.run(["--config-file", str(ROOT / "pyproject.toml")])
    assert status == 0, out + err


def test_a_remote_implementation_missing_a_method_does_not_type_check(tmp_path: Path) -> None:
    module = tmp_path / "broken_plugin.py"
    module.write_text(BROKEN_REMOTE)
    out, err, status = api.run(["--config-file", str(ROOT / "pyproject.toml"), str(module)])
    assert status == 1 and "incompatible type" in out and "PromptsService" in out, out + err
