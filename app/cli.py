"""The `faas` command: serve, run a job worker, migrate, tenant and API-key administration, and ingest files.

Configuration errors end the program before it serves, with one line that names the variable and the fix.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from app.plugins import StartupError
from app.settings import ConfigError, Settings

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from app.tenancy import Tenant, TenantStore

T = TypeVar("T")


def _fail(message: str, code: int = 2) -> int:
    print(f"faas: {message}", file=sys.stderr)
    return code


def _where(settings: Settings) -> str:
    """Where the data is (absolute directory, or server without credentials): every command says it."""
    from app.db import location

    return location(settings.database_url, settings.data_dir)


def database_url(settings: Settings, *, migrate: bool, create: bool = False) -> str:
    """The URL to use: DATABASE_URL, or the embedded server (started here, migrated when `migrate`).

    Without DATABASE_URL, only `create` makes a new embedded database: FAAS_DATA_DIR is relative to the working
    directory by default, and a command run from another folder must not quietly start an empty second database
    (and, say, print a key the running server does not know)."""
    from app import migrations
    from app.db import embedded_dir, embedded_exists, start_embedded

    if settings.database_url:
        return settings.database_url
    if not (create or embedded_exists(settings.data_dir)):
        raise ConfigError(
            f"no embedded database at {embedded_dir(settings.data_dir)} (FAAS_DATA_DIR={settings.data_dir}, "
            f"working directory {Path.cwd()}): run this where `faas serve` keeps its data, set FAAS_DATA_DIR or "
            "DATABASE_URL to the server's, or create one here with `faas migrate --create`"
        )
    url = start_embedded(settings.data_dir)
    if migrate:
        migrations.upgrade(url)
    return url


async def _pending(url: str) -> set[str]:
    from app import migrations
    from app.db import Database

    db = Database(url, min_size=1, max_size=1)
    await db.connect()
    try:
        return await migrations.pending(db)
    finally:
        await db.disconnect()


def _exit_quietly(signum: int, frame: object) -> None:
    raise SystemExit(0)


async def _preflight(app: Starlette) -> None:
    app.state.preflight = True  # a check, not a start: the lifespan does not announce "serving"
    async with app.router.lifespan_context(app):
        pass


def _metrics_across_workers() -> None:
    """Before the workers start: an empty directory for prometheus_client's multiprocess mode, so that a scrape on
    any worker sums them all (app.metrics). PROMETHEUS_MULTIPROC_DIR when set (emptied of a previous run's
    files), else a temporary directory removed when `faas serve` exits."""
    import atexit
    import shutil
    import tempfile

    from app.metrics import MULTIPROC_ENV

    given = os.environ.get(MULTIPROC_ENV)
    if given:
        Path(given).mkdir(parents=True, exist_ok=True)
        for old in Path(given).glob("*.db"):
            old.unlink()
        return
    path = tempfile.mkdtemp(prefix="faas-metrics-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    os.environ[MULTIPROC_ENV] = path  # the workers read it as they import prometheus_client


def cmd_serve(args: argparse.Namespace) -> int:
    import logging

    import uvicorn

    from app import logs
    from app.main import create_app

    settings = Settings.from_env()
    logs.configure(settings.log_level)
    url = database_url(settings, migrate=True, create=True)  # a first start creates the embedded database
    os.environ["DATABASE_URL"] = url  # workers read settings from the environment
    # Open and close everything once before uvicorn starts, so that a plugin's bad setting, a schema behind or an
    # unreachable database ends here with one line instead of a traceback in every worker.
    asyncio.run(_preflight(create_app(Settings.from_env())))
    logging.getLogger("faas.cli").info("database: %s", _where(settings), extra={"database": _where(settings)})
    if args.workers > 1:
        _metrics_across_workers()
    # uvicorn re-raises the SIGTERM it shut down on, with the default action: the process would die there and then,
    # skipping the exit hook that stops the embedded PostgreSQL. Turn it into an ordinary exit instead.
    signal.signal(signal.SIGTERM, _exit_quietly)
    uvicorn.run(
        "app.main:serve_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips=os.environ.get("FAAS_FORWARDED_ALLOW_IPS", "127.0.0.1"),
        timeout_graceful_shutdown=20,
    )
    return 0


async def _work(app: Starlette) -> None:
    """Open everything the app would (database, plugin services, the job worker) and wait for SIGTERM or SIGINT;
    leaving the lifespan stops the worker, which lets running jobs finish or hands them back to the queue."""
    import logging

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with app.router.lifespan_context(app):
        logging.getLogger("faas.jobs").info("faas worker ready; SIGTERM or SIGINT stops it")
        await stop.wait()


def cmd_worker(args: argparse.Namespace) -> int:
    import logging

    from app import logs
    from app.jobs.registry import job_kinds
    from app.main import create_app
    from app.plugins import discover, resolve

    settings = Settings.from_env()
    logs.configure(settings.log_level)
    if not job_kinds(resolve(settings, discover())).handlers:
        return _fail(
            "no plugin in FAAS_PLUGINS that runs direct here declares job kinds: there is nothing for a worker to run"
        )
    os.environ["DATABASE_URL"] = database_url(settings, migrate=True)
    logging.getLogger("faas.cli").info("database: %s", _where(settings), extra={"database": _where(settings)})
    os.environ["FAAS_JOBS_WORKER"] = "on"  # the point of this command, whatever the serving replicas are told
    # SIGTERM must end the process through the exit hooks (they stop an embedded PostgreSQL): _work handles it
    # inside the event loop; this covers the moments before and after.
    signal.signal(signal.SIGTERM, _exit_quietly)
    asyncio.run(_work(create_app(Settings.from_env())))
    return 0


async def _reachable(url: str) -> None:
    from app.db import Database

    db = Database(url, min_size=1, max_size=1)
    await db.connect()
    await db.disconnect()


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    url = database_url(settings, migrate=False, create=args.create)
    from app import migrations

    asyncio.run(_reachable(url))  # alembic's own connection would fail with a traceback
    migrations.upgrade(url)
    print(f"faas: database schema is at head ({_where(settings)})", file=sys.stderr)
    return 0


def _admin_database() -> str:
    """The database the admin commands act on: DATABASE_URL (never migrated here), or the embedded one under
    FAAS_DATA_DIR (migrated, as `faas serve` would); a schema behind ends the command with one line."""
    settings = Settings.from_env()
    url = database_url(settings, migrate=not settings.database_url)
    if asyncio.run(_pending(url)):
        raise ConfigError("the database schema is behind: run `faas migrate` first")
    return url


def _with_store(url: str, work: Callable[[TenantStore], Awaitable[T]]) -> T:
    """Run `work` with a TenantStore on its own one-connection pool, closed afterwards; once it has succeeded, say
    on stderr which database it acted on (a refusal stays the one line that says why)."""
    from app.db import Database
    from app.tenancy import TenantStore

    async def run() -> T:
        db = Database(url, min_size=1, max_size=1)
        await db.connect()
        try:
            return await work(TenantStore(db))
        finally:
            await db.disconnect()

    result = asyncio.run(run())
    print(f"faas: database: {_where(Settings.from_env())}", file=sys.stderr)
    return result


async def _resolve_tenant(store: TenantStore, ref: str) -> Tenant:
    """A tenant by id (`ten_…`) or, failing that, by its unique name."""
    from app.errors import NotFound

    try:
        return await store.get_tenant(tenant_id=ref)
    except NotFound:
        found = await store.find_tenant(name=ref)
        if found is None:
            raise NotFound(f"no tenant has the id or name {ref!r}: `faas tenants list` shows them") from None
        return found


def _valid(model: Any, **fields: Any) -> Any:
    """`fields` as the admin API's schema `model`, or ConfigError with the first rule broken (one line)."""
    from pydantic import ValidationError

    try:
        return model(**fields)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        raise ConfigError(f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}") from None


def _print_json(value: Any) -> None:
    print(json.dumps(value, default=str))


def cmd_tenants_create(args: argparse.Namespace) -> int:
    from app.admin import TenantCreate, TenantCreated, tenant_public

    body = _valid(TenantCreate, name=args.name)
    url = _admin_database()

    async def create(store: TenantStore) -> TenantCreated:
        tenant, key, secret = await store.insert_tenant(name=body.name)
        return TenantCreated(**tenant_public(tenant).model_dump(), api_key=secret, key_id=key.id)

    created = _with_store(url, create)
    if args.json:
        _print_json(created.model_dump(mode="json"))
    else:
        print(f"tenant {created.tenant_id} ({created.name}) created")
        print(f"api key (shown once, store it now): {created.api_key}")
    return 0


def cmd_tenants_list(args: argparse.Namespace) -> int:
    from app.admin import TenantPublic, tenant_public

    url = _admin_database()

    async def every(store: TenantStore) -> list[TenantPublic]:
        out: list[TenantPublic] = []
        cursor: str | None = None
        while True:  # a page at a time, so no one query holds every tenant
            page = await store.list_tenants(limit=100, cursor=cursor)
            out += [tenant_public(t) for t in page.items]
            if page.next_cursor is None:
                return out
            cursor = page.next_cursor

    tenants = _with_store(url, every)
    if args.json:
        _print_json([t.model_dump(mode="json") for t in tenants])
        return 0
    rows = [(t.tenant_id, t.name, t.created_at.isoformat(timespec="seconds")) for t in tenants]
    _print_table(("TENANT", "NAME", "CREATED"), rows)
    return 0


def _print_table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def cmd_keys_create(args: argparse.Namespace) -> int:
    from app.admin import KeyCreate, KeyCreated, key_public

    body = _valid(KeyCreate, name=args.name)
    url = _admin_database()

    async def create(store: TenantStore) -> KeyCreated:
        tenant = await _resolve_tenant(store, args.tenant)
        key, secret = await store.insert_key(tenant_id=tenant.id, name=body.name)
        return KeyCreated(**key_public(key).model_dump(), api_key=secret)

    created = _with_store(url, create)
    if args.json:
        _print_json(created.model_dump(mode="json"))
    else:
        print(f"key {created.key_id} ({created.name or 'unnamed'}) created for tenant {created.tenant_id}")
        print(f"api key (shown once, store it now): {created.api_key}")
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    from app.admin import KeyPublic, key_public

    url = _admin_database()

    async def every(store: TenantStore) -> list[KeyPublic]:
        tenant = await _resolve_tenant(store, args.tenant)
        return [key_public(k) for k in await store.list_keys(tenant_id=tenant.id)]

    keys = _with_store(url, every)
    if args.json:
        _print_json([k.model_dump(mode="json") for k in keys])
        return 0
    rows = [
        (
            k.key_id,
            k.name,
            k.prefix + "…",
            k.created_at.isoformat(timespec="seconds"),
            k.revoked_at.isoformat(timespec="seconds") if k.revoked_at else "-",
        )
        for k in keys
    ]
    _print_table(("KEY", "NAME", "PREFIX", "CREATED", "REVOKED"), rows)
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from app.admin import KeyPublic, key_public

    url = _admin_database()

    async def revoke(store: TenantStore) -> KeyPublic:
        tenant = await _resolve_tenant(store, args.tenant)
        return key_public(await store.revoke_key(tenant_id=tenant.id, key_id=args.key_id))

    key = _with_store(url, revoke)
    if args.json:
        _print_json(key.model_dump(mode="json"))
    else:
        # A replica may answer from its key cache for FAAS_AUTH_CACHE_SECONDS (2 by default) after this.
        print(f"key {key.key_id} of tenant {key.tenant_id} revoked: requests with it answer 403")
    return 0


def config_rows(settings: Settings) -> list[tuple[str, str, str, str]]:
    """(variable, value in effect, default, meaning) of every setting: the core's, then each plugin's. Loading each
    plugin's settings validates them, so a bad value ends here with the one-line ConfigError."""
    from app.config import SettingsGroup
    from app.http_client import without_credentials
    from app.jobs.config import JobsConfig
    from app.plugins import discover
    from app.settings import CORE_VARIABLES, SECRET_VARIABLES

    def shown(var: str, default: str) -> str:
        value = settings.environ.get(var)
        if value is None or value == "":
            return default
        return "********" if var in SECRET_VARIABLES else without_credentials(value)

    rows = [(var, shown(var, default), default, meaning) for var, default, meaning in CORE_VARIABLES]
    groups: list[type[SettingsGroup]] = [JobsConfig, *(p.config for p in discover() if p.config is not None)]
    for group in groups:
        group.load(settings)
        rows += [(var, shown(var, default), default, meaning) for var, default, meaning in group.describe()]
    return rows


def cmd_config(args: argparse.Namespace) -> int:
    rows = config_rows(Settings.from_env())
    if args.markdown:
        print("| variable | meaning | default |\n|---|---|---|")
        for var, _, default, meaning in rows:
            print(f"| `{var}` | {meaning} | {f'`{default}`' if default else ''} |")
        return 0
    width = max(len(r[0]) for r in rows)
    for var, value, _, meaning in rows:
        print(f"{var:<{width}}  {value or '(unset)'}\n{'':<{width}}  {meaning}")
    print(f"faas: database: {_where(Settings.from_env())}", file=sys.stderr)
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from app.cli_ingest import ingest

    if not args.key:
        return _fail("an API key is needed: pass --key or set FAAS_API_KEY")
    return ingest(args.paths, collection=args.collection, url=args.url, key=args.key)


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default; descriptions keep their line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default is None or action.default is argparse.SUPPRESS or isinstance(action.default, bool):
            return text  # a flag is off unless given; an unset option has nothing to show
        if not action.option_strings:
            return text
        return f"{text} (default: {'none' if action.default == '' else '%(default)s'})"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("motadata-faas")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="faas",
        description="Motadata FaaS: seven AI services in one program. Settings come from the environment "
        "(`faas config` lists them); without DATABASE_URL every command uses the embedded PostgreSQL under "
        "FAAS_DATA_DIR.",
        formatter_class=_Help,
    )
    p.add_argument("--version", action="version", version=f"faas {_version()}")
    sub = p.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help="`faas COMMAND --help` for its options"
    )

    def command(parent: Any, name: str, text: str) -> argparse.ArgumentParser:
        made: argparse.ArgumentParser = parent.add_parser(name, help=text, description=text, formatter_class=_Help)
        return made

    serve = command(sub, "serve", "serve HTTP (embedded PostgreSQL when DATABASE_URL is unset)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 in a container)")
    serve.add_argument("--port", type=int, default=8000, help="TCP port to listen on")
    serve.add_argument("--workers", type=int, default=1, help="server processes sharing the port and the database")
    serve.set_defaults(func=cmd_serve)
    worker = command(sub, "worker", "run a job worker only (no HTTP), until SIGTERM or SIGINT")
    worker.set_defaults(func=cmd_worker)
    migrate = command(sub, "migrate", "apply database migrations (alembic upgrade heads)")
    migrate.add_argument(
        "--create",
        action="store_true",
        help="without DATABASE_URL, create the embedded database under FAAS_DATA_DIR when there is none",
    )
    migrate.set_defaults(func=cmd_migrate)
    config = command(sub, "config", "list every setting with its value in effect (and check them)")
    config.add_argument("--markdown", action="store_true", help="print the table the README carries")
    config.set_defaults(func=cmd_config)

    tenants = command(sub, "tenants", "tenant administration (what the admin API does, without the admin key)")
    tsub = tenants.add_subparsers(dest="tenants_command", required=True, metavar="ACTION", help="create or list")
    create = command(tsub, "create", "create a tenant and print its first API key, once")
    create.add_argument("name", help="the tenant's unique name")
    create.add_argument("--json", action="store_true", help="print the admin API's JSON (api_key included)")
    create.set_defaults(func=cmd_tenants_create)
    listed = command(tsub, "list", "list every tenant: id, name, creation time")
    listed.add_argument("--json", action="store_true", help="print a JSON array of the admin API's tenant objects")
    listed.set_defaults(func=cmd_tenants_list)

    keys = command(sub, "keys", "API-key administration of one tenant")
    ksub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION", help="create, list or revoke")
    kcreate = command(ksub, "create", "issue another API key for a tenant and print it, once")
    kcreate.add_argument("tenant", help="the tenant's id (ten_…) or name")
    kcreate.add_argument("--name", default="", help="a label to recognise the key by")
    kcreate.add_argument("--json", action="store_true", help="print the admin API's JSON (api_key included)")
    kcreate.set_defaults(func=cmd_keys_create)
    klist = command(ksub, "list", "list a tenant's keys (prefixes only: a key is never shown again)")
    klist.add_argument("tenant", help="the tenant's id (ten_…) or name")
    klist.add_argument("--json", action="store_true", help="print a JSON array of the admin API's key objects")
    klist.set_defaults(func=cmd_keys_list)
    revoke = command(ksub, "revoke", "revoke a key: requests with it answer 403")
    revoke.add_argument("tenant", help="the tenant's id (ten_…) or name")
    revoke.add_argument("key_id", help="the key's id (key_…), from `faas keys list`")
    revoke.add_argument("--json", action="store_true", help="print the admin API's key object")
    revoke.set_defaults(func=cmd_keys_revoke)
    ingest = command(
        sub, "ingest", "upload files or folders to a running server's ingestion service and follow the jobs"
    )
    ingest.add_argument("paths", nargs="+", metavar="PATH", help="files, or folders walked for known formats")
    ingest.add_argument(
        "--collection", required=True, default=argparse.SUPPRESS, help="the rag collection's id or name (required)"
    )
    ingest.add_argument(
        "--url", default=os.environ.get("FAAS_URL", "http://127.0.0.1:8000"), help="the server (or FAAS_URL)"
    )
    ingest.add_argument("--key", default=os.environ.get("FAAS_API_KEY", ""), help="a tenant API key (or FAAS_API_KEY)")
    ingest.set_defaults(func=cmd_ingest)
    return p


def _database_url_given() -> bool:
    try:
        return Settings.from_env().database_url is not None
    except ConfigError:
        return False  # the command itself reports the bad setting


def main(argv: Sequence[str] | None = None) -> int:
    from app.db import DatabaseUnavailable
    from app.errors import ServiceError

    args = parser().parse_args(argv)
    if getattr(args, "workers", 1) < 1:
        return _fail("--workers must be 1 or more")
    given = _database_url_given()  # before `serve` points DATABASE_URL at the embedded server
    try:
        code: int = args.func(args)
    except (ConfigError, StartupError) as exc:
        return _fail(str(exc))
    except DatabaseUnavailable as exc:
        if given:
            return _fail(f"cannot connect to DATABASE_URL ({exc.reason}): check the URL and that PostgreSQL runs there")
        from app.db import embedded_dir

        where = embedded_dir(Settings.from_env().data_dir)
        return _fail(f"cannot connect to the embedded database in {where} ({exc.reason})")
    except ServiceError as exc:  # an admin command's refusal: a tenant that exists already, a key that does not
        return _fail(exc.detail, 1)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    raise SystemExit(main())
