"""Which job kinds exist here, and which of them this process runs: read from the plugins' `jobs` mappings.

A kind is `<plugin>.<name>` and belongs to the plugin that declares it. Every plugin this process opens may enqueue
its own kinds; a worker here runs only the kinds of plugins that run direct here (a remote plugin's jobs run where
that plugin runs). A misnamed kind stops start-up with one line that says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.jobs.queue import valid_kind
from app.jobs.schemas import KIND_MAX
from app.plugins import Layout, StartupError

if TYPE_CHECKING:
    from app.jobs.handler import JobHandler


@dataclass(frozen=True)
class JobKinds:
    known: frozenset[str]  # kinds of every plugin opened here: what may be enqueued
    handlers: dict[str, JobHandler]  # kinds a worker here runs (plugins in direct mode)


def job_kinds(layout: Layout) -> JobKinds:
    known: set[str] = set()
    handlers: dict[str, JobHandler] = {}
    for plugin in layout.open_order:
        for kind, handler in plugin.jobs.items():
            if not (kind.startswith(plugin.name + ".") and valid_kind(kind)):
                raise StartupError(
                    f"plugin {plugin.name!r} declares the job kind {kind!r}: name it {plugin.name}.<name> "
                    f"(lowercase letters, digits, _ . -; at most {KIND_MAX} characters in all)"
                )
            if not callable(handler):
                raise StartupError(f"the handler of job kind {kind!r} is not callable")
            known.add(kind)
            if layout.modes[plugin.name] == "direct":
                handlers[kind] = handler
    return JobKinds(known=frozenset(known), handlers=handlers)
