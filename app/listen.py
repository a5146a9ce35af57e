"""PostgreSQL notifications: `Listener` keeps one connection LISTENing on some channels.

A replica may keep a copy of a row on its hot path (the gateway keeps each tenant's policy) only while it is told
when the row changes: the writer sends `pg_notify(channel, key)` in the transaction that changes it, PostgreSQL
delivers it to every listening replica once that transaction commits, and the replica drops its copy. While the
listening connection is down, notifications may be missed, so `live` is False and the cache must not be trusted;
each reconnection calls `on_reset` (drop everything), since whatever changed in between was not heard.

The job worker hears of new jobs the same way (see app/jobs/worker.py).

asyncpg delivers notifications to a callback, so nothing here is parked in a driver's wait loop, and every wait is an
`asyncio.timeout` block: on Python 3.11 `asyncio.wait_for` returns the result instead of raising when a cancellation
lands as the awaited call completes, and a loop built on it then ignores the cancellation and never ends (psycopg's
`notifies()` under procrastinate hung process shutdowns that way).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg

from app.db import CONNECT_TIMEOUT, plain_url

log = logging.getLogger("faas.listen")


def current_task_cancelled() -> bool:
    """Whether someone asked the running task to stop, even if a library swallowed the CancelledError since: a
    long-lived loop checks it every round, so that one lost cancellation cannot keep a process from exiting."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class Listener:
    def __init__(
        self,
        url: str,
        channels: str | Sequence[str],
        *,
        on_message: Callable[[str], None],
        on_reset: Callable[[], None],
        max_backoff: float = 5.0,
    ) -> None:
        self._url = plain_url(url)
        self._channels = (channels,) if isinstance(channels, str) else tuple(channels)
        self._name = ",".join(self._channels)
        self._on_message = on_message
        self._on_reset = on_reset
        self._max_backoff = max_backoff
        self._conn: Any = None
        self._task: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()
        self.live = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"listen:{self._name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._close()

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self._on_message(payload)

    def _terminated(self, _conn: Any) -> None:
        self.live = False
        self._lost.set()

    async def _close(self) -> None:
        self.live = False
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await conn.close()

    async def _watch(self, every: float = 15.0) -> None:
        """Return when the connection is lost: closed (the termination callback) or silent (a probe times out)."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(every):
                    await self._lost.wait()
                return
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    await self._conn.fetchval("SELECT 1")
            except Exception:
                self.live = False
                return

    async def _run(self) -> None:
        delay = 0.1
        while True:
            if current_task_cancelled():
                raise asyncio.CancelledError
            try:
                self._lost.clear()
                self._conn = await asyncpg.connect(self._url, timeout=CONNECT_TIMEOUT)
                self._conn.add_termination_listener(self._terminated)
                for channel in self._channels:
                    await self._conn.add_listener(channel, self._notified)
                # Listening from here on: whatever was cached before may have changed unheard.
                self._on_reset()
                self.live = True
                delay = 0.1
                await self._watch()
                log.warning("lost the notification connection for %s; reconnecting", self._name)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # an unreachable database: keep trying, the cache stays off meanwhile
                log.warning("cannot listen for %s: %s: %s", self._name, type(exc).__name__, exc)
            await self._close()
            await asyncio.sleep(delay)
            delay = min(self._max_backoff, delay * 2)
