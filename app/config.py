"""Settings groups: one pydantic-settings model per plugin (and per core part with settings of its own, such as the
job queue), read from `FAAS_<GROUP>_<SETTING>` variables.

A plugin's config.py subclasses `SettingsGroup` with typed, documented fields and sets `group` to the plugin's name;
its `open_direct` calls `<Name>Config.load(ctx.settings)`. Values come from the same environment mapping as the core
`Settings` (the process environment and `.env`, or a test's mapping), never from a second read of os.environ.
A bad value, or a `FAAS_<PLUGIN>_*` variable that is no setting at all (a typo), stops start-up with one line
naming the variable and the fix. `faas config` lists every setting of every group from these models.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

from pydantic import ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from app.settings import ConfigError, Settings

# FAAS_<PLUGIN>_ variables the core reads itself (mode, URL, service-client tuning), not the plugin's config.
CORE_SUFFIXES = ("MODE", "URL")
CORE_PREFIXES = ("CLIENT_",)


class SettingsGroup(BaseSettings):
    """Base of a group of settings. Subclasses set `group` and declare fields with defaults and descriptions."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid", validate_default=True)
    group: ClassVar[str]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only what `load` hands over: the environment was read once, into `Settings.environ`.
        return (init_settings,)

    @classmethod
    def prefix(cls) -> str:
        return f"FAAS_{cls.group.upper()}_"

    @classmethod
    def variable(cls, field: str) -> str:
        return cls.prefix() + field.upper()

    @classmethod
    def load(cls, settings: Settings) -> Self:
        """The plugin's settings from `settings.environ`, or ConfigError naming the variable and the fix."""
        prefix = cls.prefix()
        fields = {cls.variable(name): name for name in cls.model_fields}
        values: dict[str, Any] = {}
        for var, raw in settings.environ.items():
            if not var.startswith(prefix) or raw == "":
                continue
            rest = var[len(prefix) :]
            if rest in CORE_SUFFIXES or rest.startswith(CORE_PREFIXES):
                continue
            if var not in fields:
                known = ", ".join(sorted(fields)) or "(none)"
                raise ConfigError(f"{var} is not a {cls.group} setting: use one of {known}")
            values[fields[var]] = raw
        try:
            return cls(**values)
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            name = str(error["loc"][0]) if error["loc"] else ""
            var = cls.variable(name)
            default = cls.model_fields[name].default if name in cls.model_fields else None
            hint = f": use e.g. {var}={default}" if default is not None else ""
            raise ConfigError(f"{var}={values.get(name)!r} is not valid ({error['msg']}){hint}") from None

    @classmethod
    def describe(cls) -> list[tuple[str, str, str]]:
        """(variable, default, description) of every setting, for `faas config` and the README table."""
        rows = []
        for name, field in cls.model_fields.items():
            default = "" if field.default is None else str(field.default)
            if isinstance(field.default, bool):
                default = "on" if field.default else "off"
            rows.append((cls.variable(name), default, field.description or ""))
        return rows
