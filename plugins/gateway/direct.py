"""Opening the direct gateway: settings, providers, catalog, router, limiter and ledger on one exit stack.

Gateway settings are `FAAS_GATEWAY_*` variables, checked here before the app serves; a bad one stops start-up
with a line naming it. `FAAS_GATEWAY_LEDGER_WAIT_SECONDS` bounds how long an answer waits for its usage to be
committed (then it is withheld: 503). On exit the ledger writes what it still holds, then the upstream pool closes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from app.plugins import PluginContext
from app.settings import ConfigError, Settings
from plugins.gateway.anthropic_provider import AnthropicProvider
from plugins.gateway.catalog import Deployment, build_catalog
from plugins.gateway.ledger import UsageLedger
from plugins.gateway.limits import Limiter, PostgresLimiter, RedisLimiter
from plugins.gateway.local_embeddings import LocalEmbeddingProvider
from plugins.gateway.metering import Meter
from plugins.gateway.mock import MockProvider
from plugins.gateway.openai_provider import OpenAIProvider
from plugins.gateway.router import Router
from plugins.gateway.service import DirectGatewayService
from plugins.gateway.store import GatewayStore
from plugins.gateway.upstream import HttpUpstream


def _number(settings: Settings, name: str, default: float, *, minimum: float, integer: bool = False) -> float:
    raw = settings.plugin_env("gateway", name)
    var = f"FAAS_GATEWAY_{name}"
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        raise ConfigError(f"{var}={raw!r} is not {kind}: use e.g. {var}={default:g}") from None
    if value < minimum:
        raise ConfigError(f"{var}={raw} is below the minimum {minimum:g}: use e.g. {var}={default:g}")
    return value


@asynccontextmanager
async def open_gateway(ctx: PluginContext) -> AsyncIterator[DirectGatewayService]:
    s = ctx.settings
    default_max_tokens = int(_number(s, "DEFAULT_MAX_TOKENS", 1024, minimum=1, integer=True))
    fail_max = int(_number(s, "BREAKER_FAIL_MAX", 5, minimum=1, integer=True))
    reset = _number(s, "BREAKER_RESET_SECONDS", 30.0, minimum=0.01)
    ledger_wait = _number(s, "LEDGER_WAIT_SECONDS", 5.0, minimum=0.01)
    models_ttl = _number(s, "MODELS_TTL_SECONDS", 300.0, minimum=0.0)
    max_connections = int(_number(s, "MAX_CONNECTIONS", 512, minimum=1, integer=True))

    async with AsyncExitStack() as stack:
        http = HttpUpstream(max_connections=max_connections)
        stack.push_async_callback(http.aclose)
        openai, anthropic = OpenAIProvider(http), AnthropicProvider(http)

        async def lister(template: Deployment) -> list[str]:
            provider = openai if template.provider == "openai" else anthropic
            return await provider.list_models(template)

        catalog = build_catalog(s.gateway_config, s.environ, lister, ttl=models_ttl)
        router = Router(
            chat={"openai": openai, "anthropic": anthropic, "mock": MockProvider()},
            embeddings={"openai": openai, "local": LocalEmbeddingProvider()},
            fail_max=fail_max,
            reset_timeout=reset,
        )
        store = GatewayStore(ctx.db)
        limiter: Limiter
        if s.redis_url:
            redis_limiter = RedisLimiter(
                store, s.redis_url, prefix=s.plugin_env("gateway", "REDIS_PREFIX") or "faas:gw"
            )
            stack.push_async_callback(redis_limiter.aclose)
            limiter = redis_limiter
        else:
            limiter = PostgresLimiter(store)
        ledger = UsageLedger(store, limiter, wait_seconds=ledger_wait)
        ledger.start()
        stack.push_async_callback(ledger.stop)
        meter = Meter(limiter=limiter, ledger=ledger, default_max_tokens=default_max_tokens)
        yield DirectGatewayService(catalog=catalog, router=router, meter=meter, store=store, services=ctx.services)
