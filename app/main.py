"""The application factory: `create_app()` builds the Starlette app and its one root lifespan.

The lifespan opens everything on one AsyncExitStack, in dependency order (database, HTTP clients, the job queue,
each plugin's service, then the job worker), and closes it in reverse. Routes are composed once, here, from the
mounted plugins.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from app import admin, health, migrations, openapi
from app import db as db_errors
from app.db import Database
from app.errors import EXCEPTION_HANDLERS
from app.http_client import ServiceClientManager
from app.jobs import api as jobs_api
from app.jobs.config import JobsConfig
from app.jobs.queue import JobQueue
from app.jobs.registry import job_kinds
from app.metrics import Metrics
from app.middleware import RequestContextMiddleware
from app.plugins import Layout, Plugin, PluginContext, Services, StartupError, discover, resolve
from app.replay import MemoryReplayGuard, RedisReplayGuard, ReplayGuard
from app.routing import link_allowed, mount
from app.settings import Settings
from app.signing import InternalVerifier
from app.tenancy import TenantStore

log = logging.getLogger("faas.app")


def build_routes(layout: Layout) -> list[BaseRoute]:
    routes: list[BaseRoute] = [
        *mount("", "health", health.routes()),
        *mount("/api/v1/admin", "admin", admin.routes()),
        *mount("/api/v1/jobs", "jobs", jobs_api.routes()),
    ]
    for plugin in layout.mounted:
        routes += mount(f"/api/v1/{plugin.name}", plugin.name, plugin.routes())
        routes += mount("", plugin.name, plugin.root_routes())
    seen: set[tuple[str, str]] = set()
    for r in routes:
        key = (getattr(r, "method", ""), getattr(r, "path", ""))
        if key in seen:
            raise StartupError(f"two routes answer {key[0]} {key[1]}: rename one plugin's route")
        seen.add(key)
    link_allowed(routes)
    return routes


def create_app(settings: Settings | None = None, *, plugins: Sequence[Plugin[Any]] | None = None) -> Starlette:
    """Build the app. Settings default to the environment; plugins to the `faas.plugins` entry points."""
    settings = settings or Settings.from_env()
    layout = resolve(settings, discover() if plugins is None else plugins)
    routes = build_routes(layout)
    document = openapi.build(routes)
    jobs_config = JobsConfig.load(settings)
    kinds = job_kinds(layout)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        if not settings.database_url:
            raise StartupError(
                "DATABASE_URL is not set: run `faas serve` (it starts the embedded database) "
                "or point DATABASE_URL at PostgreSQL"
            )
        metrics = Metrics.for_this_process()
        async with AsyncExitStack() as stack:
            stack.callback(metrics.close)
            db = Database(settings.database_url)
            await db.connect()
            stack.push_async_callback(db.disconnect)
            heads = migrations.heads()  # read once: /health/ready compares the database with these
            behind = await migrations.pending(db, heads)
            if behind:
                raise StartupError(
                    f"the database schema is behind (missing {', '.join(sorted(behind))}): run `faas migrate`"
                )
            clients = ServiceClientManager(settings, registry=metrics.registry)
            stack.push_async_callback(clients.aclose)
            services = Services()
            jobs = JobQueue(db, kinds=kinds.known)
            for plugin in layout.open_order:
                mode = layout.modes[plugin.name]
                factory = plugin.direct if mode == "direct" else plugin.remote
                assert factory is not None  # resolve() refused a remote plugin without one
                ctx = PluginContext(
                    plugin=plugin,
                    settings=settings,
                    db=db,
                    services=services,
                    clients=clients,
                    metrics=metrics,
                    jobs=jobs,
                )
                service = await stack.enter_async_context(factory(ctx))
                services.register(plugin.name, service, mode)
            preflight = getattr(app.state, "preflight", False)  # `faas serve` opens everything once before serving
            if jobs_config.worker and kinds.handlers and not preflight:  # a check must not take jobs
                # Entered last, so it stops first: running jobs finish (or go back to the queue) while the
                # services and the database they use are still open.
                from app.jobs.worker import running_worker  # imports procrastinate: only when a worker runs

                await stack.enter_async_context(
                    running_worker(
                        database_url=settings.database_url,
                        db=db,
                        services=services,
                        handlers=kinds.handlers,
                        config=jobs_config,
                    )
                )
            if not preflight:
                log.info("serving", extra={"plugins": [p.name for p in layout.mounted], "modes": layout.modes})
            verifier: dict[str, InternalVerifier] = {}
            if settings.internal_secret:
                # Signed calls are accepted once: remembered across replicas in Redis when there is one.
                seen: ReplayGuard = RedisReplayGuard(settings.redis_url) if settings.redis_url else MemoryReplayGuard()
                stack.push_async_callback(seen.aclose)
                verifier["internal_verifier"] = InternalVerifier(settings.internal_secret.get(), seen=seen)
            state = {
                **verifier,
                "settings": settings,
                "db": db,
                "tenants": TenantStore(db, key_cache_seconds=settings.auth_cache_seconds),
                "services": services,
                "jobs": jobs,
                "readiness": health.Readiness(db, services, heads),
                "clients": clients,
                "metrics": metrics,
                "openapi": document,
            }
            # Requests see this as request.state; embedding code (tests, benchmarks, a worker) reads app.state.
            app.state.lifespan = state
            try:
                yield state
            finally:
                del app.state.lifespan

    return Starlette(
        routes=routes,
        middleware=[
            Middleware(
                RequestContextMiddleware,
                max_body_bytes=settings.max_body_bytes,
                access_log=settings.access_log,
            )
        ],
        exception_handlers={**EXCEPTION_HANDLERS, **db_errors.EXCEPTION_HANDLERS},
        lifespan=lifespan,
    )


def serve_app() -> Starlette:
    """The factory `faas serve` hands to uvicorn: each worker process configures JSON logging, then builds the app."""
    from app import logs

    settings = Settings.from_env()
    logs.configure(settings.log_level)
    return create_app(settings)
