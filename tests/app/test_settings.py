"""Settings: every bad value stops start-up with one line naming the variable and the fix; secrets never print."""

from __future__ import annotations

import pytest

from app.settings import BUILTIN_PLUGINS, ConfigError, Settings


def test_defaults_mount_all_seven_direct() -> None:
    s = Settings.from_env({})
    assert s.plugins == BUILTIN_PLUGINS
    assert s.database_url is None and str(s.data_dir) == "var"
    assert all(s.plugin(n).mode == "direct" for n in BUILTIN_PLUGINS)


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"DATABASE_URL": "mysql://x/y"}, "DATABASE_URL"),
        ({"REDIS_URL": "http://127.0.0.1"}, "REDIS_URL"),
        ({"FAAS_RAG_MODE": "sideways"}, "FAAS_RAG_MODE"),
        ({"FAAS_RAG_MODE": "remote", "FAAS_INTERNAL_SECRET": "x" * 20}, "FAAS_RAG_URL"),
        ({"FAAS_RAG_MODE": "remote", "FAAS_RAG_URL": "ftp://x", "FAAS_INTERNAL_SECRET": "x" * 20}, "FAAS_RAG_URL"),
        ({"FAAS_RAG_MODE": "remote", "FAAS_RAG_URL": "http://rag:8000"}, "FAAS_INTERNAL_SECRET"),
        ({"FAAS_ADMIN_KEY": "short"}, "FAAS_ADMIN_KEY"),
        ({"FAAS_PLUGINS": "rag,Bad Name"}, "FAAS_PLUGINS"),
        ({"FAAS_MAX_BODY_BYTES": "lots"}, "FAAS_MAX_BODY_BYTES"),
        ({"FAAS_LOG_LEVEL": "loud"}, "FAAS_LOG_LEVEL"),
        ({"FAAS_AUTH_CACHE_SECONDS": "600"}, "FAAS_AUTH_CACHE_SECONDS"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    message = str(info.value)
    assert names in message and "\n" not in message


def test_remote_mode_carries_url_and_needs_secret() -> None:
    s = Settings.from_env(
        {"FAAS_GATEWAY_MODE": "remote", "FAAS_GATEWAY_URL": "http://gw:8000/", "FAAS_INTERNAL_SECRET": "s" * 32}
    )
    assert s.plugin("gateway").mode == "remote" and s.plugin("gateway").url == "http://gw:8000"
    assert s.any_remote


def test_secrets_never_show_in_repr() -> None:
    s = Settings.from_env({"FAAS_ADMIN_KEY": "super-secret-admin-key", "FAAS_INTERNAL_SECRET": "another-secret-value"})
    assert "super-secret" not in repr(s) and "another-secret" not in repr(s) and "super-secret" not in str(s)
    assert s.admin_key is not None and s.admin_key.get() == "super-secret-admin-key"


def test_plugins_list_is_parsed_and_deduplicated() -> None:
    assert Settings.from_env({"FAAS_PLUGINS": " rag, gateway,rag "}).plugins == ("rag", "gateway")


def test_dotenv_file_is_read_and_environment_wins(
    tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / ".env"  # type: ignore[operator]
    env_file.write_text("FAAS_PLUGINS=rag,gateway\nFAAS_LOG_LEVEL=debug\n")
    monkeypatch.setenv("FAAS_LOG_LEVEL", "warning")
    monkeypatch.delenv("FAAS_PLUGINS", raising=False)
    s = Settings.from_env(dotenv=env_file)
    assert s.plugins == ("rag", "gateway") and s.log_level == "warning"


def test_client_tuning_precedence_per_upstream_then_global_then_plugin_defaults() -> None:
    llm = {"timeout": 180.0, "deadline": 600.0}
    s = Settings.from_env({})
    assert s.client("gateway", llm).timeout == 180.0 and s.client("gateway", llm).deadline == 600.0
    assert s.client("rag").timeout == 10.0  # no plugin defaults: the built-in ones
    s = Settings.from_env({"FAAS_CLIENT_TIMEOUT": "20"})
    assert s.client("gateway", llm).timeout == 20.0 and s.client("gateway", llm).deadline == 600.0
    s = Settings.from_env({"FAAS_CLIENT_TIMEOUT": "20", "FAAS_GATEWAY_CLIENT_TIMEOUT": "300"})
    assert s.client("gateway", llm).timeout == 300.0 and s.client("rag").timeout == 20.0
