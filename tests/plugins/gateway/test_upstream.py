"""What a tenant learns when a provider fails: the public model, what to do and the request id; never the provider's
words (an operator's org id, the gateway's credentials, a proxy's error page), the provider's model name, the
deployment's id or address. Those go to the log, with the request id. The same in both modes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx

from tests.app.fault_server import Step, fault_server
from tests.conftest import (
    Deployer,
    captured_logs,
)
from tests.plugins.gateway.conftest import fake_upstream, write_config

MSG = [{"role": "user", "content": "hello"}]
PATHS = ("/v1/chat/completions", "/api/v1/gateway/chat")


@asynccontextmanager
async def gateway_client(deploy_app: Deployer, config: str) -> AsyncIterator[httpx.AsyncClient]:
    """A tenant's client of the gateway in this test's mode (direct, or a front calling it remote)."""
    async with deploy_app(env={"FAAS_GATEWAY_CONFIG": config}) as d:
        yield (await d.api())[1]


@contextmanager
def openai_model(tmp_path: Path, name: str, base_url: str, deployment: str = "oa-main") -> Iterator[str]:
    model = {"deployments": [{"name": deployment, "provider": "openai", "model": "g-2024-08", "base_url": base_url}]}
    yield write_config(tmp_path, {name: model})


def assert_public(r: httpx.Response, model: str, *hidden: str) -> None:
    """The answer names the model and the request id, and none of `hidden`."""
    rid = r.headers["x-request-id"]
    body = r.json()
    message = body["error"]["message"] if "error" in body else body["detail"]
    assert f"model {model}" in message and f"request id {rid}" in message, message
    for text in ("oa-main", "g-2024-08", "127.0.0.1", *hidden):
        assert text not in r.text, (text, r.text)


async def test_an_operators_org_id_in_a_providers_429_stays_in_the_log(deploy_app: Deployer, tmp_path: Path) -> None:
    said = "Rate limit reached for g-2024-08 in organization org-AbC123xyz on tokens per min (TPM): Limit 30000"
    with fake_upstream("oa", fail_status=429, fail_message=said, retry_after="3") as (_, url):
        with openai_model(tmp_path, "limited", f"{url}/v1") as config:
            async with gateway_client(deploy_app, config) as c:
                for path in PATHS:
                    with captured_logs() as lines:
                        r = await c.post(path, json={"model": "limited", "messages": MSG})
                    assert r.status_code == 429 and r.headers["retry-after"] == "3", r.text
                    assert_public(r, "limited", "org-AbC123xyz", "TPM")
                    rid = r.headers["x-request-id"]
                    assert any("org-AbC123xyz" in line["msg"] and line["request_id"] == rid for line in lines)


async def test_provider_credential_errors_and_addresses_stay_server_side(deploy_app: Deployer, tmp_path: Path) -> None:
    leak = "Incorrect API key provided: sk-secret-abcd. You can find your API key at https://proxy.internal"
    with fake_upstream("oa", fail_status=401, fail_message=leak) as (oa, url):
        config = write_config(
            tmp_path,
            {
                "refused": {
                    "deployments": [{"name": "oa-main", "provider": "openai", "model": "g", "base_url": f"{url}/v1"}]
                },
                "gone": {
                    "deployments": [
                        {"name": "oa-gone", "provider": "openai", "model": "g", "base_url": "http://127.0.0.1:9/v1"}
                    ]
                },
            },
        )
        async with gateway_client(deploy_app, config) as c:
            for path in PATHS:
                r = await c.post(path, json={"model": "refused", "messages": MSG})
                assert r.status_code == 502, r.text
                assert_public(r, "refused", "sk-secret", "proxy.internal", "Incorrect")
                assert "refused the gateway's credentials for this model" in r.text
            oa.fail_status = 403
            r = await c.post("/v1/chat/completions", json={"model": "refused", "messages": MSG})
            assert r.status_code == 502 and "sk-secret" not in r.text

            r = await c.post("/v1/chat/completions", json={"model": "gone", "messages": MSG})
            assert r.status_code == 502, r.text
            assert_public(r, "gone", "oa-gone", ":9/")


async def test_a_providers_body_that_is_not_json_stays_in_the_log(deploy_app: Deployer, tmp_path: Path) -> None:
    page = b"<html><h1>502 Bad Gateway</h1>lb-7f9c.provider.internal could not reach g-2024-08</html>"
    async with fault_server() as provider:
        provider.script = [
            Step(502, content_type="text/html", body=page),
            Step(200, content_type="text/html", body=page),
        ]
        with openai_model(tmp_path, "flaky", f"{provider.url}/v1") as config:
            async with gateway_client(deploy_app, config) as c:
                for _ in range(2):  # an error page, then a "success" that is not JSON
                    with captured_logs() as lines:
                        r = await c.post("/api/v1/gateway/chat", json={"model": "flaky", "messages": MSG})
                    assert r.status_code == 502, r.text
                    assert_public(r, "flaky", "7f9c", "Bad Gateway")
                    assert any("lb-7f9c" in line["msg"] for line in lines)


async def test_a_providers_code_and_param_reach_the_tenant_but_not_its_words(
    deploy_app: Deployer, tmp_path: Path
) -> None:
    said = {
        "message": "max_tokens is too large: 99999. g-2024-08 supports at most 4096 (org-AbC123xyz)",
        "type": "invalid_request_error",
        "param": "max_tokens",
        "code": "integer_above_max_value",
    }
    async with fault_server() as provider:
        provider.script = [Step(400, body=json.dumps({"error": said}).encode())] * 2
        with openai_model(tmp_path, "strict", f"{provider.url}/v1") as config:
            async with gateway_client(deploy_app, config) as c:
                r = await c.post("/v1/chat/completions", json={"model": "strict", "messages": MSG})
                assert r.status_code == 400, r.text
                assert_public(r, "strict", "org-AbC123xyz", "4096")
                error = r.json()["error"]
                assert error["param"] == "max_tokens" and error["code"] == "integer_above_max_value"
                assert "check `max_tokens`" in error["message"]
                r = await c.post("/api/v1/gateway/chat", json={"model": "strict", "messages": MSG})
                assert r.status_code == 400 and r.json()["param"] == "max_tokens", r.text
