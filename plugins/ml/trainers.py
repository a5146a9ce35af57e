"""The training processes of one server process: at most `size` at once, kept warm between jobs.

`Trainers.run(payload, ...)` hands a training to an idle process (or starts one: the first training of a process
pays 3-4 s of imports) and returns its reply. A process that fails, is cancelled or passes the time limit is killed
and never reused, so a stopped training leaves nothing running. Idle processes exit on their own after a few
minutes (plugins/ml/trainer.py); one found dead is replaced. No pickle crosses the pipe: JSON in, JSON and the ONNX
bytes out.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from app.errors import InvalidInput
from plugins.ml.errors import TrainingFailed

log = logging.getLogger("faas.ml")
POLL_SECONDS = 0.25  # how often a running training checks for cancellation and its time limit
# One core per training: BLAS and OpenMP would otherwise start a thread per core, beside the server's own work.
THREADS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
REUSE_MARGIN = 10.0  # seconds before an idle process's own exit after which it is not handed work
Process = asyncio.subprocess.Process


class Trainers:
    def __init__(self, *, size: int, idle_seconds: float = 300.0) -> None:
        self._slots = asyncio.Semaphore(size)
        self._idle: list[tuple[Process, float]] = []  # with when each became idle
        self._idle_seconds = idle_seconds

    async def _start(self) -> Process:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "plugins.ml.trainer",
            str(self._idle_seconds),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=None,  # the libraries' warnings, and a crash's trace, go to this server's log stream
            env={**os.environ, **THREADS},
        )

    async def run(
        self, payload: dict[str, Any], *, should_stop: Callable[[], bool], limit_seconds: float
    ) -> tuple[dict[str, Any], bytes]:
        """(metadata, ONNX bytes). InvalidInput for data that cannot train, TrainingFailed when the process fails
        or runs past `limit_seconds`; CancelledError when `should_stop()` says so (the process is killed)."""
        async with self._slots:
            proc = None
            while self._idle and proc is None:
                candidate, since = self._idle.pop()
                # An idle process exits on its own after `idle_seconds`: reuse one only well before that.
                if candidate.returncode is None and time.monotonic() - since < self._idle_seconds - REUSE_MARGIN:
                    proc = candidate
                else:
                    await _kill(candidate)
            proc = proc or await self._start()
            try:
                reply = await _exchange(proc, payload, should_stop, limit_seconds)
            except BaseException:
                await _kill(proc)
                raise
            self._idle.append((proc, time.monotonic()))
        meta, artifact = reply
        if "error" in meta:
            raise InvalidInput(meta["error"])
        return meta, artifact

    async def aclose(self) -> None:
        while self._idle:
            await _kill(self._idle.pop()[0])


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def _kill(proc: Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


async def _reply(proc: Process, body: bytes) -> tuple[dict[str, Any], bytes]:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(str(len(body)).encode() + b"\n" + body)
    await proc.stdin.drain()
    header = await proc.stdout.readline()
    if not header:
        raise EOFError
    meta: dict[str, Any] = json.loads(header)
    artifact = await proc.stdout.readexactly(meta["artifact_bytes"])
    return meta, artifact


async def _exchange(
    proc: Process, payload: dict[str, Any], should_stop: Callable[[], bool], limit_seconds: float
) -> tuple[dict[str, Any], bytes]:
    talk = asyncio.ensure_future(_reply(proc, json.dumps(payload).encode()))
    started = time.monotonic()
    try:
        while not talk.done():
            await asyncio.wait({talk}, timeout=POLL_SECONDS)
            if talk.done():
                break
            if should_stop():
                raise asyncio.CancelledError
            if time.monotonic() - started > limit_seconds:
                raise TrainingFailed(
                    f"training took longer than {limit_seconds:g} s and was stopped: send fewer rows, or fewer or "
                    "smaller trees",
                    extra={"limit_seconds": limit_seconds},
                )
        try:
            meta, artifact = talk.result()
        except (EOFError, ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
            await _kill(proc)
            log.error("training process failed (exit status %s, %s)", proc.returncode, type(exc).__name__)
            raise TrainingFailed(
                f"the training process failed (exit status {proc.returncode}); the log has the reason"
            ) from None
    finally:
        if not talk.done():
            talk.cancel()
    # The digest stored is the service's own, of exactly these bytes.
    if meta.get("artifact_bytes") and await asyncio.to_thread(_sha256, artifact) != meta["sha256"]:
        raise TrainingFailed("the training process's reply was garbled")
    return meta, artifact
