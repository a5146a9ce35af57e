"""What a tenant learns when a provider fails: never the provider's words about the gateway's credentials, nor
the provider's address."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Deployer
from tests.plugins.gateway.conftest import fake_upstream, write_config
from tests.plugins.gateway.test_limits import _tenant

MSG = [{"role": "user", "content": "hello"}]


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
        async with deploy_app(env={"FAAS_GATEWAY_CONFIG": config}) as app:
            _, c = await _tenant(app)
            for path, body in (
                ("/v1/chat/completions", {"model": "refused", "messages": MSG}),
                ("/api/v1/gateway/chat", {"model": "refused", "messages": MSG}),
            ):
                r = await c.post(path, json=body)
                assert r.status_code == 502, r.text
                assert "sk-secret" not in r.text and "proxy.internal" not in r.text and "Incorrect" not in r.text
                assert "refused the gateway's credentials for this model" in r.text and "oa-main" in r.text
            oa.fail_status = 403
            r = await c.post("/v1/chat/completions", json={"model": "refused", "messages": MSG})
            assert r.status_code == 502 and "sk-secret" not in r.text

            r = await c.post("/v1/chat/completions", json={"model": "gone", "messages": MSG})
            assert r.status_code == 502, r.text
            assert "oa-gone" in r.text and "127.0.0.1" not in r.text and ":9" not in r.text
            await c.aclose()
