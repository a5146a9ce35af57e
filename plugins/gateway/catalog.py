"""Which public model names exist and which provider deployments serve each one.

The map comes from `FAAS_GATEWAY_CONFIG` (YAML or JSON) when set; otherwise from the environment: with
`OPENAI_API_KEY` (and optionally `OPENAI_BASE_URL`) every model the upstream lists is served under its own
name, likewise `ANTHROPIC_API_KEY`; those lists are fetched lazily, kept for a short TTL
(`FAAS_GATEWAY_MODELS_TTL_SECONDS`), and fetched again within seconds when a listing failed. The local
embedding model is always there, and so is the `mock` chat model unless `FAAS_GATEWAY_MOCK_MODEL=off` (one rule
whatever providers are configured, so an example written against a fresh install keeps working once a provider is
added; a model map may still give the name its own deployments). A bad file stops start-up with one line naming
the file, the field and the fix.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.errors import Unavailable
from app.settings import ConfigError, Secret

log = logging.getLogger("faas.gateway.catalog")
Provider = Literal["openai", "anthropic", "mock", "local"]
Kind = Literal["chat", "embeddings"]
LOCAL_EMBEDDING_MODEL = "all-MiniLM-L6-v2"
MOCK_MODEL = "mock-1"
OPENAI_DEFAULT_BASE = "https://api.openai.com/v1"
ANTHROPIC_DEFAULT_BASE = "https://api.anthropic.com"


@dataclass(frozen=True)
class Deployment:
    """One way to serve a public model: a provider, its model name, where, with which key."""

    id: str
    provider: Provider
    model: str
    base_url: str = ""
    api_key: Secret | None = field(default=None, repr=False)
    weight: float = 1.0
    timeout: float = 60.0
    input_cost_per_mtok: float = 0.0
    output_cost_per_mtok: float = 0.0
    # The operator's opt-in (the model map's `drop_unsupported`): a request field this provider has no equivalent
    # for is dropped (and logged) rather than refused with a 400.
    drop_unsupported: bool = False

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_cost_per_mtok + completion_tokens * self.output_cost_per_mtok) / 1e6


@dataclass(frozen=True)
class ModelEntry:
    name: str
    kind: Kind
    deployments: tuple[Deployment, ...]
    owned_by: str = "faas"


class _DeploymentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    provider: Provider
    model: str | None = Field(default=None, description="the provider's model name (default: the public name)")
    base_url: str | None = None
    api_key_env: str | None = None
    weight: float = Field(default=1.0, gt=0)
    timeout_seconds: float = Field(default=60.0, gt=0, le=3600)
    input_cost_per_mtok: float = Field(default=0.0, ge=0)
    output_cost_per_mtok: float = Field(default=0.0, ge=0)
    name: str | None = None


class _ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Kind = "chat"
    deployments: list[_DeploymentSpec] = Field(min_length=1)
    drop_unsupported: bool = Field(
        default=False,
        description="drop request fields a deployment's provider has no equivalent for, instead of a 400",
    )


class _FileSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    models: dict[str, _ModelSpec] = Field(min_length=1)


def _read(path: Path) -> Any:
    text = path.read_text()
    if path.suffix.lower() == ".json":
        return json.loads(text)
    import yaml  # lazy: only a YAML config needs it

    return yaml.safe_load(text)


def load_file(path: Path, environ: Mapping[str, str]) -> dict[str, ModelEntry]:
    var = "FAAS_GATEWAY_CONFIG"
    try:
        spec = _FileSpec.model_validate(_read(path))
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{var}={path}: {where}: {err['msg']} (see the gateway section of the README)") from None
    except Exception as exc:
        raise ConfigError(f"{var}={path} is not valid YAML/JSON: {exc}".splitlines()[0]) from None
    entries: dict[str, ModelEntry] = {}
    for name, model in spec.models.items():
        deps = []
        for i, d in enumerate(model.deployments):
            key: Secret | None = None
            if d.api_key_env:
                value = environ.get(d.api_key_env)
                if not value:
                    raise ConfigError(
                        f"{var}={path}: models.{name}.deployments.{i} takes its key from {d.api_key_env}, "
                        "which is not set: set it, or remove api_key_env"
                    )
                key = Secret(value)
            if d.provider == "openai" and not (d.base_url or key):
                raise ConfigError(
                    f"{var}={path}: models.{name}.deployments.{i} needs base_url or api_key_env for provider openai"
                )
            if d.provider == "local" and model.kind != "embeddings":
                raise ConfigError(f"{var}={path}: models.{name}: provider local serves kind: embeddings only")
            base = d.base_url or (OPENAI_DEFAULT_BASE if d.provider == "openai" else "")
            if d.provider == "anthropic":
                base = d.base_url or ANTHROPIC_DEFAULT_BASE
            deps.append(
                Deployment(
                    id=d.name or f"{name}#{i}",
                    provider=d.provider,
                    model=d.model or name,
                    base_url=base.rstrip("/"),
                    api_key=key,
                    weight=d.weight,
                    timeout=d.timeout_seconds,
                    input_cost_per_mtok=d.input_cost_per_mtok,
                    output_cost_per_mtok=d.output_cost_per_mtok,
                    drop_unsupported=model.drop_unsupported,
                )
            )
        entries[name] = ModelEntry(name=name, kind=model.kind, deployments=tuple(deps))
    return entries


def builtin_entries(*, with_mock: bool) -> dict[str, ModelEntry]:
    out = {
        LOCAL_EMBEDDING_MODEL: ModelEntry(
            LOCAL_EMBEDDING_MODEL,
            "embeddings",
            (Deployment(id="local", provider="local", model=LOCAL_EMBEDDING_MODEL),),
            owned_by="local",
        )
    }
    if with_mock:
        out[MOCK_MODEL] = ModelEntry(
            MOCK_MODEL, "chat", (Deployment(id="mock", provider="mock", model=MOCK_MODEL),), owned_by="mock"
        )
    return out


@dataclass(frozen=True)
class Source:
    """A provider configured by environment variables alone: its models are listed by the provider."""

    template: Deployment

    def entry(self, model: str) -> ModelEntry:
        kind: Kind = "embeddings" if "embed" in model else "chat"
        dep = Deployment(
            id=f"{self.template.provider}:{model}",
            provider=self.template.provider,
            model=model,
            base_url=self.template.base_url,
            api_key=self.template.api_key,
            timeout=self.template.timeout,
        )
        return ModelEntry(model, kind, (dep,), owned_by=self.template.provider)


def env_sources(environ: Mapping[str, str]) -> list[Source]:
    sources = []
    if environ.get("OPENAI_API_KEY"):
        base = (environ.get("OPENAI_BASE_URL") or OPENAI_DEFAULT_BASE).rstrip("/")
        sources.append(Source(Deployment("openai", "openai", "", base, Secret(environ["OPENAI_API_KEY"]))))
    if environ.get("ANTHROPIC_API_KEY"):
        base = (environ.get("ANTHROPIC_BASE_URL") or ANTHROPIC_DEFAULT_BASE).rstrip("/")
        sources.append(Source(Deployment("anthropic", "anthropic", "", base, Secret(environ["ANTHROPIC_API_KEY"]))))
    return sources


Lister = Callable[[Deployment], Awaitable[list[str]]]
RETRY_FIRST = 1.0  # seconds before a failed listing is tried again; doubled after each failure
RETRY_MAX = 30.0  # the longest wait between two attempts at a provider that keeps failing


@dataclass
class _Listing:
    """What one env-configured provider listed last, and when to ask it again."""

    entries: dict[str, ModelEntry] = field(default_factory=dict)
    listed: bool = False  # a listing has succeeded at least once
    failures: int = 0  # consecutive failed listings
    due: float = 0.0  # monotonic time the next listing may start
    error: str = ""  # why the last listing failed


class Catalog:
    """Static entries plus models discovered from env-configured providers (re-listed after `ttl` seconds).

    The discovered lists are a per-replica cache with a short TTL, never a source of truth. One listing runs at a
    time. While a provider has never been listed, callers wait for a listing of it in flight (so a cold replica
    never answers 404 for a model it is about to discover). A failed listing keeps the last good list and is tried
    again soon, with exponential backoff (1 s, 2 s, 4 s ... up to 30 s), not after the TTL; and while a provider has
    never been listed, a model the catalog does not know is `Unavailable` (503 with `Retry-After` until the next
    attempt), not a 404: it may well be that provider's.
    """

    def __init__(
        self, static: dict[str, ModelEntry], sources: list[Source], lister: Lister, *, ttl: float = 300.0
    ) -> None:
        self._static = static
        self._sources = sources
        self._lister = lister
        self._ttl = ttl
        self._state = [_Listing() for _ in sources]
        self._listing: asyncio.Task[None] | None = None
        self._listing_cold = False  # the listing in flight asks a provider never listed yet

    async def _refresh(self) -> None:
        if self._listing is None or self._listing.done():
            now = time.monotonic()
            due = [i for i, st in enumerate(self._state) if st.due <= now]
            if not due:
                return
            self._listing_cold = any(not self._state[i].listed for i in due)
            self._listing = asyncio.create_task(self._list(due), name="gateway-catalog-listing")
        if self._listing_cold:
            # Shielded: a caller that gives up (its client left) must not cancel the listing others wait for.
            await asyncio.shield(self._listing)

    async def _list(self, due: list[int]) -> None:
        for i in due:
            src, st = self._sources[i], self._state[i]
            try:
                names = await self._lister(src.template)
            except Exception as exc:
                # Keep serving what was listed before, and ask again soon: the provider may be back in a moment.
                st.failures += 1
                wait = min(RETRY_MAX, RETRY_FIRST * 2 ** (st.failures - 1))
                st.due = time.monotonic() + wait
                st.error = f"{type(exc).__name__}: {exc}".splitlines()[0]
                log.warning(
                    "listing the models of %s failed (%d in a row), next try in %.0f s: %s",
                    src.template.provider,
                    st.failures,
                    wait,
                    st.error,
                )
                continue
            st.entries = {name: src.entry(name) for name in names}
            st.listed, st.failures, st.error = True, 0, ""
            st.due = time.monotonic() + self._ttl

    def _discovered(self) -> dict[str, ModelEntry]:
        found: dict[str, ModelEntry] = {}
        for st in self._state:
            for name, entry in st.entries.items():
                found.setdefault(name, entry)
        return found

    async def get(self, name: str) -> ModelEntry | None:
        """The entry named `name`, or None when no provider serves it. Raises `Unavailable` (with `Retry-After`)
        for a name the catalog does not know while some provider has never been listed."""
        entry = self._static.get(name)
        if entry is not None:
            return entry
        await self._refresh()
        entry = self._discovered().get(name)
        if entry is None:
            unlisted = [(src, st) for src, st in zip(self._sources, self._state, strict=True) if not st.listed]
            if unlisted:
                wait = max(1, math.ceil(min(st.due for _, st in unlisted) - time.monotonic()))
                who = ", ".join(src.template.provider for src, _ in unlisted)
                raise Unavailable(
                    f"model {name!r} is not known yet: the model list of {who} could not be fetched "
                    f"({unlisted[0][1].error or 'not listed yet'}); it is tried again in {wait} s",
                    headers={"Retry-After": str(wait)},
                    extra={"code": "model_list_unavailable", "param": "model"},
                )
        return entry

    async def all(self) -> list[ModelEntry]:
        await self._refresh()
        merged = {**self._discovered(), **self._static}
        return [merged[k] for k in sorted(merged)]


def build_catalog(
    config: Path | None, environ: Mapping[str, str], lister: Lister, *, ttl: float = 300.0, mock: bool = True
) -> Catalog:
    if config is not None:
        static = load_file(config, environ)
        for name, entry in builtin_entries(with_mock=mock).items():
            static.setdefault(name, entry)
        return Catalog(static, [], lister)
    return Catalog(builtin_entries(with_mock=mock), env_sources(environ), lister, ttl=ttl)
