"""Fallbacks, breakers and streaming failures, asserted on what each upstream received."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from tests.plugins.gateway.conftest import fake_upstream, gateway, tenant_key, write_config


def _two(tmp_path: Path, a_url: str, b_url: str, **extra: object) -> str:
    return write_config(
        tmp_path,
        {
            "m": {
                "deployments": [
                    {
                        "provider": "openai",
                        "model": "a-model",
                        "base_url": f"{a_url}/v1",
                        "weight": 1000,
                        "name": "A",
                        **extra,
                    },
                    {"provider": "openai", "model": "b-model", "base_url": f"{b_url}/v1", "weight": 1, "name": "B"},
                ]
            }
        },
    )


MSG = [{"role": "user", "content": "hello world again"}]


@pytest.mark.parametrize("status", [429, 500, 503])
def test_falls_back_on_429_and_5xx_then_breaker_opens(database_url: str, tmp_path: Path, status: int) -> None:
    with fake_upstream("A", fail_status=status) as (a, a_url), fake_upstream("B") as (b, b_url):
        env = {
            "FAAS_GATEWAY_CONFIG": _two(tmp_path, a_url, b_url),
            "FAAS_GATEWAY_BREAKER_FAIL_MAX": "2",
            "FAAS_GATEWAY_BREAKER_RESET_SECONDS": "60",
        }
        with gateway(database_url, **env) as url:
            sdk = openai.OpenAI(base_url=f"{url}/v1", api_key=tenant_key(url)["api_key"], max_retries=0)
            for _ in range(4):
                r = sdk.chat.completions.create(model="m", messages=MSG)
                assert r.choices[0].message.content == "B says: hello world again"
            assert len(b.received) == 4
            # 5xx trips A's breaker after 2 failures, so A is skipped; a 429 never trips it.
            assert len(a.received) == (4 if status == 429 else 2)
            sdk.close()


def test_timeout_falls_back(database_url: str, tmp_path: Path) -> None:
    with fake_upstream("A", delay=2.0) as (a, a_url), fake_upstream("B") as (_, b_url):
        with gateway(database_url, FAAS_GATEWAY_CONFIG=_two(tmp_path, a_url, b_url, timeout_seconds=0.3)) as url:
            sdk = openai.OpenAI(base_url=f"{url}/v1", api_key=tenant_key(url)["api_key"], max_retries=0)
            r = sdk.chat.completions.create(model="m", messages=MSG)
            assert r.choices[0].message.content.startswith("B says") and len(a.received) == 1
            sdk.close()


def test_client_error_is_not_retried_elsewhere(database_url: str, tmp_path: Path) -> None:
    with fake_upstream("A", fail_status=400) as (a, a_url), fake_upstream("B") as (b, b_url):
        with gateway(database_url, FAAS_GATEWAY_CONFIG=_two(tmp_path, a_url, b_url)) as url:
            sdk = openai.OpenAI(base_url=f"{url}/v1", api_key=tenant_key(url)["api_key"], max_retries=0)
            with pytest.raises(openai.BadRequestError) as err:
                sdk.chat.completions.create(model="m", messages=MSG)
            # The provider's words are for the operator's log; the tenant learns the model and what to check.
            assert "A failing with 400" not in err.value.message and "model m:" in err.value.message
            assert len(a.received) == 1 and b.received == []
            sdk.close()


def test_all_rate_limited_passes_retry_after_on(database_url: str, tmp_path: Path) -> None:
    with (
        fake_upstream("A", fail_status=429, retry_after="7") as (a, a_url),
        fake_upstream("B", fail_status=429, retry_after="9") as (b, b_url),
    ):
        with gateway(database_url, FAAS_GATEWAY_CONFIG=_two(tmp_path, a_url, b_url)) as url:
            key = tenant_key(url)["api_key"]
            r = httpx.post(
                f"{url}/v1/chat/completions",
                json={"model": "m", "messages": MSG},
                headers={"authorization": f"Bearer {key}"},
            )
            assert r.status_code == 429 and r.headers["retry-after"] == "9"
            assert r.json()["error"]["type"] == "rate_limit_error"
            assert len(a.received) == 1 and len(b.received) == 1


def _stream(url: str, key: str) -> tuple[int, list[str]]:
    with httpx.stream(
        "POST",
        f"{url}/v1/chat/completions",
        json={"model": "m", "messages": MSG, "stream": True},
        headers={"authorization": f"Bearer {key}"},
    ) as r:
        return r.status_code, [line for line in r.iter_lines() if line.startswith("data:")]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_mid_stream_failure_ends_with_error_not_done(database_url: str, tmp_path: Path, provider: str) -> None:
    with fake_upstream("A", fail_midstream=True) as (_, a_url), fake_upstream("B") as (b, b_url):
        base = f"{a_url}/v1" if provider == "openai" else a_url
        config = write_config(
            tmp_path,
            {
                "m": {
                    "deployments": [
                        {"provider": provider, "model": "x", "base_url": base, "weight": 1000},
                        {"provider": "openai", "model": "y", "base_url": f"{b_url}/v1", "weight": 1},
                    ]
                }
            },
        )
        with gateway(database_url, FAAS_GATEWAY_CONFIG=config) as url:
            status, events = _stream(url, tenant_key(url)["api_key"])
            assert status == 200
            assert "A" in events[1] and "error" in events[-1] and "[DONE]" not in events[-1]
            assert b.received == []  # nothing retried after the first streamed byte


def test_stream_falls_back_before_first_byte(database_url: str, tmp_path: Path) -> None:
    with fake_upstream("A", fail_status=502) as (a, a_url), fake_upstream("B") as (b, b_url):
        with gateway(database_url, FAAS_GATEWAY_CONFIG=_two(tmp_path, a_url, b_url)) as url:
            status, events = _stream(url, tenant_key(url)["api_key"])
            assert status == 200 and events[-1] == "data: [DONE]" and "B" in "".join(events)
            assert len(a.received) == 1 and len(b.received) == 1
