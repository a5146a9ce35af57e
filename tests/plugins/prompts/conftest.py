"""The prompts tests deploy the prompts plugin alone, direct and remote (the root conftest's `mode`), and read the
render worker processes from /proc."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from plugins.prompts.worker import MARK


@pytest.fixture
def deploy_plugins() -> tuple[str, ...]:
    return ("prompts",)


def render_workers(parents: set[int] | None = None, *, anywhere: bool = False) -> dict[int, int]:
    """Live (not zombie) render worker processes whose parent is in `parents` (default: this process), or whatever
    their parent when `anywhere`, read from /proc: pid -> parent pid."""
    parents = {os.getpid()} if parents is None else parents
    found: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if MARK.encode() not in (entry / "cmdline").read_bytes():
                continue
            state, ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, ValueError):
            continue  # gone meanwhile
        if state != "Z" and (anywhere or int(ppid) in parents):
            found[int(entry.name)] = int(ppid)
    return found


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far."""
    fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
