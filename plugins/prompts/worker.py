"""The render worker: a child process that compiles and renders templates for `plugins.prompts.pool`.

It reads jobs from stdin and writes replies to its original stdout, each a frame (4-byte big-endian length, then
JSON). It is started by `command()`, which imports only the template engine (never the server's modules, its
database drivers or its HTTP clients), with a minimal environment (no secrets) and no inherited descriptors.

Limits of its own, on top of the parent's deadline (which kills it):
- an address-space cap (RLIMIT_AS) of its start-up size plus `memory_mb`: a runaway allocation fails here with a
  MemoryError, answered as a render limit, after which the worker retires;
- a CPU limit (RLIMIT_CPU) re-armed before each job, and death with its parent (PR_SET_PDEATHSIG): a worker
  never outlives the server or keeps burning CPU on a job nobody waits for;
- a lower scheduling priority than the server, and SIGINT ignored (the server decides when it stops).
"""

from __future__ import annotations

import ctypes
import math
import os
import resource
import signal
import struct
import sys
from pathlib import Path
from typing import Any

from app.codec import dumps, loads
from plugins.prompts import sandbox, templates
from plugins.prompts.errors import RenderLimitExceeded, TemplateRefused, TemplateVariablesError

HEADER = struct.Struct(">I")
_PR_SET_PDEATHSIG = 1
# Imports `plugins.prompts.worker` without running `plugins/prompts/__init__.py`, which builds the whole plugin
# (routes, service, remote client) and would pull in most of the server.
_BOOTSTRAP = """\
import sys, types
root = sys.argv[1]
sys.path.insert(0, root)
import plugins
package = types.ModuleType("plugins.prompts")
package.__path__ = [root + "/plugins/prompts"]
sys.modules["plugins.prompts"] = package
from plugins.prompts.worker import main
main(sys.argv[2])
"""
_PASSED_ENV = ("PATH", "PYTHONPATH", "PYTHONHOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")
MARK = "faas-prompts-render-worker"


def command(config: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
    """The argv and environment that start a worker with `config` (a JSON-able dict)."""
    root = str(Path(__file__).resolve().parent.parent.parent)
    argv = [sys.executable, "-c", _BOOTSTRAP, root, dumps({**config, "parent": os.getpid()}).decode(), MARK]
    env = {k: v for k, v in os.environ.items() if k in _PASSED_ENV}
    return argv, env


def _read_exactly(fd: int, n: int) -> bytes | None:
    chunks: list[bytes] = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _write_frame(fd: int, payload: bytes) -> None:
    view = memoryview(HEADER.pack(len(payload)) + payload)
    while view:
        view = view[os.write(fd, view) :]


def _detach(parent: int) -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the closed stdin still ends an idle worker
    if os.getppid() != parent:
        sys.exit(0)  # the parent died before the line above took effect
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.nice(5)


def _limit_memory(memory_mb: int) -> None:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    cap = pages * os.sysconf("SC_PAGE_SIZE") + memory_mb * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))


def _arm_cpu_limit(seconds: float) -> None:
    # A backstop for a job whose parent stopped waiting without killing us: SIGXCPU ends the process.
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = math.ceil(usage.ru_utime + usage.ru_stime + seconds) + 2
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard == resource.RLIM_INFINITY or soft <= hard:
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def handle(env: sandbox.PromptSandbox, cache: templates.UnitCache, job: dict[str, Any]) -> dict[str, Any]:
    """One job: `compile` answers the variables, `render` the text of each unit; errors as a problem reply."""
    try:
        prompt = templates.compile_prompt(
            env, type=job["type"], syntax=job["syntax"], template=job["template"], cache=cache
        )
        if job["op"] == "compile":
            return {"ok": True, "variables": prompt.variables, "retire": False}
        texts = templates.render_units(prompt, job["values"], env.max_output_chars)
        return {"ok": True, "texts": texts, "retire": False}
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        return problem(exc, compiling=job.get("op") == "compile")


def problem(exc: BaseException, *, compiling: bool = False) -> dict[str, Any]:
    if compiling and isinstance(exc, MemoryError):
        error: BaseException = TemplateRefused("compiling the template needed more memory than a prompt may use")
    else:
        error = sandbox.translate(exc)
    reply: dict[str, Any] = {"ok": False, "detail": str(getattr(error, "detail", error))}
    if isinstance(error, TemplateVariablesError):
        reply.update(kind="variables", missing=error.extra["missing"], unknown=error.extra["unknown"])
    elif isinstance(error, RenderLimitExceeded):
        reply["kind"] = "limit"
    elif isinstance(error, TemplateRefused):
        reply["kind"] = "refused"
    else:
        reply["kind"] = "internal"
    # After a MemoryError the heap may be fragmented or half-built objects linger: start afresh.
    reply["retire"] = isinstance(exc, MemoryError)
    return reply


def main(raw_config: str) -> None:
    config = loads(raw_config)
    _detach(config["parent"])
    out = os.dup(1)
    os.dup2(2, 1)  # the protocol owns the original stdout; a stray print goes to stderr
    env = sandbox.PromptSandbox(max_output_chars=config["max_output_chars"])
    cache = templates.UnitCache()
    handle(env, cache, {"op": "render", "type": "text", "syntax": "jinja2", "template": "{{ x }}", "values": {"x": 1}})
    _limit_memory(config["memory_mb"])
    _write_frame(out, dumps({"ready": True, "pid": os.getpid()}))
    while True:
        header = _read_exactly(0, HEADER.size)
        if header is None:
            return  # the server closed our stdin: it is stopping
        raw = _read_exactly(0, HEADER.unpack(header)[0])
        if raw is None:
            return
        try:
            job = loads(raw)
            _arm_cpu_limit(float(job.get("seconds", 60)))
            reply = handle(env, cache, job)
            payload = dumps(reply)
        except MemoryError:  # decoding the job or encoding the reply
            del raw
            reply = problem(MemoryError())
            payload = dumps(reply)
        _write_frame(out, payload)
        if reply["retire"]:
            return
