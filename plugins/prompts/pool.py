"""A small pool of supervised worker processes, for work that must not run on the event loop and must be stoppable.

A job is a JSON object sent to an idle worker; its reply is a JSON object. At most `size` jobs run at once, one per
worker; the others wait up to `queue_seconds` for a free worker (then PoolBusy). A job that outlives its timeout
gets its worker killed (JobTimeout); a worker that dies or breaks the protocol mid-job is dropped (WorkerLost). In
either case only that job fails: the next job that finds no idle worker starts a new one, so a killed worker is
replaced on demand, and workers are started lazily (a replica that never renders Jinja2 never starts one).

Why not `concurrent.futures.ProcessPoolExecutor`: killing one stuck worker breaks the whole executor (every
pending job fails with BrokenProcessPool), and it pickles, so a compromised worker could send the server a pickle
to load. Here the parent only ever decodes JSON from a worker, and bounds its size.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Callable
from typing import Any

from app.codec import dumps, loads

log = logging.getLogger("faas.prompts.pool")
HEADER = struct.Struct(">I")
START_SECONDS = 30.0  # a cold interpreter on a loaded machine; only the first job of a new worker waits for it
STOP_SECONDS = 2.0

Command = Callable[[], tuple[list[str], dict[str, str]]]


class PoolError(Exception):
    """Base of the pool's own failures (the caller turns them into problems)."""


class PoolBusy(PoolError):
    """No worker became free within the queue time."""


class PoolClosed(PoolError):
    """The pool is closing: the server is stopping."""


class JobTimeout(PoolError):
    """The job ran past its timeout; its worker was killed."""


class WorkerLost(PoolError):
    """The worker died or broke the protocol during the job; it was dropped."""


class WorkerStartFailed(PoolError):
    """No worker could be started (the job never ran)."""


class _Worker:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        self.stdin = proc.stdin
        self.stdout = proc.stdout
        # Whatever a worker writes to stderr (a crash's traceback) goes to our log, as JSON lines like the rest.
        self.stderr = asyncio.get_running_loop().create_task(_log_lines(proc.pid, proc.stderr))

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    async def send(self, payload: bytes) -> None:
        self.stdin.write(HEADER.pack(len(payload)))
        self.stdin.write(payload)
        await self.stdin.drain()

    async def receive(self, max_bytes: int) -> bytes:
        (size,) = HEADER.unpack(await self.stdout.readexactly(HEADER.size))
        if size > max_bytes:
            raise ValueError(f"a worker reply of {size} bytes is larger than {max_bytes}")
        return await self.stdout.readexactly(size)

    def kill(self) -> None:
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()


class WorkerPool:
    def __init__(
        self,
        command: Command,
        *,
        size: int,
        queue_seconds: float,
        max_reply_bytes: int,
        start_seconds: float = START_SECONDS,
    ) -> None:
        self._command = command
        self._slots = asyncio.Semaphore(size)
        self._queue_seconds = queue_seconds
        self._max_reply = max_reply_bytes
        self._start_seconds = start_seconds
        self._idle: list[_Worker] = []
        self._workers: set[_Worker] = set()
        self._reaping: set[_Worker] = set()
        self._reapers: set[asyncio.Task[None]] = set()
        self._closed = False

    def pids(self) -> list[int]:
        """Process ids of the live workers (idle or busy)."""
        return sorted(w.pid for w in self._workers if w.alive)

    async def run(self, job: dict[str, Any], *, seconds: float) -> dict[str, Any]:
        """Run `job` on a worker and return its reply, or raise a PoolError saying why not."""
        if self._closed:
            raise PoolClosed("the render workers are stopping")
        payload = dumps({**job, "seconds": seconds})
        try:
            async with asyncio.timeout(self._queue_seconds):
                await self._slots.acquire()
        except TimeoutError:
            raise PoolBusy(f"no render worker became free within {self._queue_seconds:g} s") from None
        try:
            worker = await self._checkout()
            return await self._call(worker, payload, seconds)
        finally:
            self._slots.release()

    async def _checkout(self) -> _Worker:
        while self._idle:
            worker = self._idle.pop()  # the most recently used: its caches are warm
            if worker.alive:
                return worker
            self._drop(worker)
        if self._closed:
            raise PoolClosed("the render workers are stopping")
        return await self._start()

    async def _start(self) -> _Worker:
        argv, env = self._command()
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                cwd="/",
            )
        except OSError as exc:
            raise WorkerStartFailed(f"a render worker could not be started: {exc}") from None
        worker = _Worker(proc)
        self._workers.add(worker)
        try:
            async with asyncio.timeout(self._start_seconds):
                hello = loads(await worker.receive(4096))
            if not isinstance(hello, dict) or not hello.get("ready"):
                raise ValueError("the worker did not say it was ready")
        except BaseException as exc:
            self._drop(worker)
            if isinstance(exc, Exception):
                raise WorkerStartFailed(f"a render worker did not start: {type(exc).__name__}") from None
            raise
        log.info("render worker started", extra={"worker_pid": worker.pid})
        return worker

    async def _call(self, worker: _Worker, payload: bytes, seconds: float) -> dict[str, Any]:
        try:
            async with asyncio.timeout(seconds):
                await worker.send(payload)
                raw = await worker.receive(self._max_reply)
            reply = loads(raw)
            if not isinstance(reply, dict):
                raise ValueError("a worker reply is not a JSON object")
        except TimeoutError:
            self._drop(worker)
            raise JobTimeout(f"the job took longer than {seconds:g} s") from None
        except (asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
            self._drop(worker)
            raise WorkerLost(f"the render worker stopped during the job ({type(exc).__name__})") from None
        except BaseException:
            self._drop(worker)  # cancelled mid-job: whatever it sends next would answer the wrong job
            raise
        if reply.get("retire") or self._closed:
            self._retire(worker)
        else:
            self._idle.append(worker)
        return reply

    def _drop(self, worker: _Worker) -> None:
        """Kill the worker now; reap it in the background."""
        worker.kill()
        self._reap(worker, 0.0)

    def _retire(self, worker: _Worker) -> None:
        """Let the worker finish on its own (it exits when its stdin closes); kill it if it does not."""
        with contextlib.suppress(OSError):
            worker.stdin.close()
        self._reap(worker, STOP_SECONDS)

    def _reap(self, worker: _Worker, grace: float) -> None:
        if worker in self._idle:
            self._idle.remove(worker)
        if worker in self._reaping:
            return
        self._reaping.add(worker)
        task = asyncio.get_running_loop().create_task(self._wait(worker, grace), name=f"reap-worker-{worker.pid}")
        self._reapers.add(task)
        task.add_done_callback(self._reapers.discard)

    async def _wait(self, worker: _Worker, grace: float) -> None:
        try:
            if grace > 0:
                try:
                    async with asyncio.timeout(grace):
                        await worker.proc.wait()
                except TimeoutError:
                    worker.kill()
            await worker.proc.wait()
            await worker.stderr
        finally:
            self._workers.discard(worker)
            self._reaping.discard(worker)
        if worker.proc.returncode not in (0, -9):
            log.warning("render worker exited", extra={"worker_pid": worker.pid, "returncode": worker.proc.returncode})

    async def aclose(self) -> None:
        """Stop every worker: idle ones by closing their stdin, busy ones (there should be none) by killing them."""
        self._closed = True
        idle, self._idle = self._idle, []
        for worker in list(self._workers):
            if worker in idle:
                self._retire(worker)
            elif worker not in self._reaping:
                self._drop(worker)
        while self._reapers:
            await asyncio.gather(*list(self._reapers), return_exceptions=True)


async def _log_lines(pid: int, stream: asyncio.StreamReader) -> None:
    while True:
        try:
            line = await stream.readline()
        except ValueError:  # a line longer than the stream's limit: log what there is
            line = await stream.read(64 * 1024)
        if not line:
            return
        log.warning("render worker %s: %s", pid, line.decode(errors="replace").rstrip()[:2000])
