"""Typed settings read once from the environment (and an optional `.env`), validated before serving.

`Settings.from_env()` is the only reader of the process environment; everything else receives a `Settings`
instance, so tests build one from a plain mapping. A bad value raises `ConfigError`, whose message is one
line naming the variable and the fix. Secrets are held as `Secret` so that they never print.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

BUILTIN_PLUGINS = ("gateway", "agents", "rag", "cache", "ml", "prompts", "ingestion")

# The core's variables as `faas config` lists them: (variable, default, meaning). Plugins list their own
# FAAS_<NAME>_* settings from their config models (app.config.SettingsGroup).
CORE_VARIABLES: tuple[tuple[str, str, str], ...] = (
    ("DATABASE_URL", "", "PostgreSQL with pgvector; unset: the embedded PostgreSQL under FAAS_DATA_DIR"),
    ("FAAS_DATA_DIR", "./var", "Where the embedded database lives"),
    ("REDIS_URL", "", "Optional shared cache / rate-limit store"),
    ("FAAS_PLUGINS", ",".join(BUILTIN_PLUGINS), "Comma-separated plugins to mount"),
    ("FAAS_<NAME>_MODE", "direct", "direct (in-process) or remote (proxy to another deployment)"),
    ("FAAS_<NAME>_URL", "", "Base URL of the deployment that serves <name> directly; required when remote"),
    ("FAAS_INTERNAL_SECRET", "", "HMAC key for signed service-to-service calls (16+ characters, same everywhere)"),
    ("FAAS_ADMIN_KEY", "", "Bearer key of the admin API (16+ characters); unset: admin API closed"),
    ("FAAS_MAX_BODY_BYTES", str(10 * 1024 * 1024), "Request body limit (413 above it)"),
    ("FAAS_AUTH_CACHE_SECONDS", "2", "How long a replica may answer an API-key lookup from memory (0 = off)"),
    ("FAAS_LOG_LEVEL", "info", "debug, info, warning or error"),
    ("FAAS_ACCESS_LOG", "on", "JSON access log: on or off"),
    (
        "FAAS_CLIENT_<X>",
        "",
        "Service-client tuning for every upstream (see the README); FAAS_<NAME>_CLIENT_<X> per one",
    ),
    ("FAAS_FORWARDED_ALLOW_IPS", "127.0.0.1", "Proxies whose X-Forwarded-* headers are trusted"),
)
SECRET_VARIABLES = frozenset({"FAAS_INTERNAL_SECRET", "FAAS_ADMIN_KEY"})
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,30}$")


class ConfigError(Exception):
    """A configuration value is missing or wrong; the message names the variable and the fix."""


class Secret:
    """A string that does not show itself in repr, str or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


Mode = Literal["direct", "remote"]


@dataclass(frozen=True)
class PluginSettings:
    name: str
    mode: Mode = "direct"
    url: str | None = None


@dataclass(frozen=True)
class ClientSettings:
    """Service-client tuning: FAAS_CLIENT_<X>, overridden per upstream by FAAS_<NAME>_CLIENT_<X>."""

    timeout: float = 10.0  # per try: read, write and pool wait (seconds)
    connect_timeout: float = 2.0
    deadline: float = 30.0  # all tries together, retry waits included
    retries: int = 2  # extra tries after the first, for failures that are safe to repeat
    backoff_base: float = 0.1  # first backoff cap; doubles per retry, full jitter
    backoff_max: float = 2.0
    retry_after_max: float = 5.0  # an upstream's Retry-After is honoured up to this
    retry_budget: float = 0.2  # retries allowed as a share of recent requests (plus a small floor)
    breaker_failures: int = 5  # consecutive failures that open the breaker
    breaker_reset: float = 30.0  # seconds open before one trial call


_CLIENT_FIELDS: dict[str, tuple[type, float]] = {
    "timeout": (float, 0.001),
    "connect_timeout": (float, 0.001),
    "deadline": (float, 0.001),
    "retries": (int, 0),
    "backoff_base": (float, 0.0),
    "backoff_max": (float, 0.0),
    "retry_after_max": (float, 0.0),
    "retry_budget": (float, 0.0),
    "breaker_failures": (int, 1),
    "breaker_reset": (float, 0.001),
}


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    data_dir: Path = Path("./var")
    redis_url: str | None = None
    plugins: tuple[str, ...] = BUILTIN_PLUGINS
    plugin_settings: Mapping[str, PluginSettings] = field(default_factory=dict)
    internal_secret: Secret | None = None
    admin_key: Secret | None = None
    max_body_bytes: int = 10 * 1024 * 1024
    # How long a replica may answer a key lookup from memory; a revoked key works elsewhere for at most this long.
    auth_cache_seconds: float = 2.0
    log_level: str = "info"
    access_log: bool = True
    client_settings: Mapping[str, ClientSettings] = field(default_factory=dict)
    # Every variable, for the plugins' own FAAS_<NAME>_<SETTING> values (app.config.SettingsGroup.load).
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)

    def plugin(self, name: str) -> PluginSettings:
        return self.plugin_settings.get(name) or PluginSettings(name=name)

    def client(self, name: str, defaults: Mapping[str, float] | None = None) -> ClientSettings:
        """Client tuning for upstream `name`. Precedence: FAAS_<NAME>_CLIENT_<X>, then FAAS_CLIENT_<X>, then the
        plugin's own `defaults` (an LLM call legitimately runs for minutes), then the built-in defaults."""
        if not defaults:
            return self.client_settings.get(name) or self.client_settings.get("") or ClientSettings()
        base = _client_overrides(self.environ, "FAAS_CLIENT_", replace(ClientSettings(), **defaults))  # type: ignore[arg-type]
        return _client_overrides(self.environ, f"FAAS_{name.upper()}_CLIENT_", base)

    @property
    def any_remote(self) -> bool:
        return any(p.mode == "remote" for p in self.plugin_settings.values())

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, dotenv: Path | None = None) -> Settings:
        """Read settings from `environ` (default: `.env` in the working directory overlaid by os.environ)."""
        if environ is None:
            merged: dict[str, str] = {}
            env_file = dotenv if dotenv is not None else Path(".env")
            if env_file.is_file():
                from dotenv import dotenv_values

                merged.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
            merged.update(os.environ)
            environ = merged
        env = dict(environ)
        return cls(
            database_url=_database_url(env.get("DATABASE_URL")),
            data_dir=Path(env.get("FAAS_DATA_DIR") or "./var"),
            redis_url=_url(env, "REDIS_URL", ("redis", "rediss", "unix")),
            plugins=_plugins(env.get("FAAS_PLUGINS")),
            plugin_settings=_plugin_settings(env),
            internal_secret=_secret(env, "FAAS_INTERNAL_SECRET", min_length=16),
            admin_key=_secret(env, "FAAS_ADMIN_KEY", min_length=16),
            max_body_bytes=_int(env, "FAAS_MAX_BODY_BYTES", 10 * 1024 * 1024, minimum=1024),
            auth_cache_seconds=_seconds(env, "FAAS_AUTH_CACHE_SECONDS", 2.0, maximum=60.0),
            log_level=_choice(env, "FAAS_LOG_LEVEL", "info", ("debug", "info", "warning", "error")),
            access_log=_choice(env, "FAAS_ACCESS_LOG", "on", ("on", "off")) == "on",
            client_settings=_client_settings(env),
            environ=env,
        )._checked()

    def _checked(self) -> Settings:
        remote = [p.name for p in self.plugin_settings.values() if p.mode == "remote"]
        if remote and self.internal_secret is None:
            raise ConfigError(
                f"FAAS_INTERNAL_SECRET is required because {', '.join(remote)} runs remote: "
                "set it to the same random string (16+ characters) on every deployment"
            )
        return self


def _database_url(value: str | None) -> str | None:
    if not value:
        return None
    scheme = urlsplit(value).scheme
    if scheme not in ("postgresql", "postgres", "postgresql+asyncpg"):
        raise ConfigError(
            f"DATABASE_URL has scheme {scheme or '(none)'!r}: use postgresql://user:password@host:5432/dbname, "
            "or unset it to run the embedded PostgreSQL"
        )
    return value


def _url(env: Mapping[str, str], var: str, schemes: tuple[str, ...]) -> str | None:
    value = env.get(var)
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in schemes or not (parts.netloc or parts.path):
        raise ConfigError(
            f"{var} must be a URL with scheme {' or '.join(schemes)}, for example {schemes[0]}://127.0.0.1"
        )
    return value


def _plugins(value: str | None) -> tuple[str, ...]:
    if value is None or not value.strip():
        return BUILTIN_PLUGINS
    names = tuple(dict.fromkeys(n.strip().lower() for n in value.split(",") if n.strip()))
    for name in names:
        if not _NAME.match(name):
            raise ConfigError(
                f"FAAS_PLUGINS has a bad name {name!r}: use comma-separated plugin names such as gateway,rag"
            )
    return names


def _plugin_settings(env: Mapping[str, str]) -> dict[str, PluginSettings]:
    found: dict[str, PluginSettings] = {}
    for key, value in env.items():
        m = re.fullmatch(r"FAAS_([A-Z][A-Z0-9_]*)_MODE", key)
        if not m:
            continue
        name = m.group(1).lower()
        mode = value.strip().lower()
        if mode not in ("direct", "remote"):
            raise ConfigError(f"{key}={value!r} is not a mode: use direct or remote")
        url = env.get(f"FAAS_{m.group(1)}_URL") or None
        if mode == "remote":
            if not url:
                raise ConfigError(
                    f"FAAS_{m.group(1)}_URL is required because {key}=remote: set it to the base URL of the "
                    f"deployment that serves {name} directly, for example http://{name}:8000"
                )
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ConfigError(f"FAAS_{m.group(1)}_URL={url!r} is not an http(s) URL: use e.g. http://{name}:8000")
        found[name] = PluginSettings(name=name, mode=mode, url=url.rstrip("/") if url else None)  # type: ignore[arg-type]
    return found


def _client_settings(env: Mapping[str, str]) -> dict[str, ClientSettings]:
    base = _client_overrides(env, "FAAS_CLIENT_", ClientSettings())
    found = {"": base}
    names = {m.group(1) for k in env if (m := re.fullmatch(r"FAAS_([A-Z][A-Z0-9_]*?)_CLIENT_[A-Z_]+", k))}
    for upper in names:
        found[upper.lower()] = _client_overrides(env, f"FAAS_{upper}_CLIENT_", base)
    return found


def _client_overrides(env: Mapping[str, str], prefix: str, base: ClientSettings) -> ClientSettings:
    values: dict[str, float | int] = {}
    for key in env:
        if not key.startswith(prefix):
            continue
        name = key[len(prefix) :].lower()
        if name not in _CLIENT_FIELDS:
            raise ConfigError(
                f"{key} is not a client setting: use one of "
                f"{', '.join(prefix + n.upper() for n in sorted(_CLIENT_FIELDS))}"
            )
        kind, minimum = _CLIENT_FIELDS[name]
        raw = env[key].strip()
        try:
            number = kind(raw)
        except ValueError:
            raise ConfigError(
                f"{key}={raw!r} is not a {'whole ' if kind is int else ''}number: e.g. {key}={getattr(base, name)}"
            ) from None
        if number < minimum or number != number:
            raise ConfigError(f"{key}={raw} is below the minimum {minimum}: e.g. {key}={getattr(base, name)}")
        values[name] = number
    return replace(base, **values) if values else base  # type: ignore[arg-type]


def _secret(env: Mapping[str, str], var: str, *, min_length: int) -> Secret | None:
    value = env.get(var)
    if not value:
        return None
    if len(value) < min_length:
        raise ConfigError(
            f"{var} is too short: use at least {min_length} random characters (e.g. `openssl rand -hex 32`)"
        )
    return Secret(value)


def _int(env: Mapping[str, str], var: str, default: int, *, minimum: int) -> int:
    value = env.get(var)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{var}={value!r} is not a whole number: use e.g. {var}={default}") from None
    if number < minimum:
        raise ConfigError(f"{var}={number} is below the minimum {minimum}: use e.g. {var}={default}")
    return number


def _seconds(env: Mapping[str, str], var: str, default: float, *, maximum: float) -> float:
    value = env.get(var)
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{var}={value!r} is not a number of seconds: use e.g. {var}={default:g}") from None
    if not 0 <= number <= maximum:
        raise ConfigError(f"{var}={number:g} is out of range: use 0 (off) to {maximum:g} seconds")
    return number


def _choice(env: Mapping[str, str], var: str, default: str, choices: tuple[str, ...]) -> str:
    value = (env.get(var) or default).strip().lower()
    if value not in choices:
        raise ConfigError(f"{var}={value!r} is not one of {', '.join(choices)}")
    return value
