"""OpenAI and every OpenAI-compatible server (vLLM, Ollama, LM Studio...) by base URL.

The client's body goes upstream as it came, with the deployment's model name and without the gateway's own
extension fields; streaming always asks for usage (the ledger and the tenant's limits need it) and drops the
usage chunk again when the client did not ask for it (the router does that).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import orjson

from app.errors import UpstreamFailed
from plugins.gateway.catalog import OPENAI_DEFAULT_BASE, Deployment
from plugins.gateway.upstream import HttpUpstream

GATEWAY_FIELDS = ("cache",)


def upstream_body(dep: Deployment, body: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in body.items() if k not in GATEWAY_FIELDS and v is not None}
    out["model"] = dep.model
    if dep.base_url == OPENAI_DEFAULT_BASE and "max_tokens" in out and "max_completion_tokens" not in out:
        # OpenAI's own API deprecated `max_tokens` for this field and refuses it for its reasoning models; servers
        # that merely speak the API (vLLM, Ollama...) know `max_tokens` best.
        out["max_completion_tokens"] = out.pop("max_tokens")
    return out


class OpenAIProvider:
    native_n = True  # `n` choices in one call

    def __init__(self, http: HttpUpstream) -> None:
        self._http = http

    @staticmethod
    def _headers(dep: Deployment) -> dict[str, str]:
        return {"authorization": f"Bearer {dep.api_key.get()}"} if dep.api_key else {}

    @staticmethod
    def _where(dep: Deployment) -> str:
        return f"deployment {dep.id} ({dep.provider} {dep.model})"

    async def chat(self, dep: Deployment, body: dict[str, Any]) -> dict[str, Any]:
        payload = upstream_body(dep, body)
        payload["stream"] = False
        payload.pop("stream_options", None)
        return await self._http.post_json(
            f"{dep.base_url}/chat/completions",
            payload,
            headers=self._headers(dep),
            seconds=dep.timeout,
            where=self._where(dep),
        )

    async def stream(self, dep: Deployment, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        payload = upstream_body(dep, body)
        payload["stream"] = True
        payload["stream_options"] = {**(payload.get("stream_options") or {}), "include_usage": True}
        events = self._http.stream_events(
            f"{dep.base_url}/chat/completions",
            payload,
            headers=self._headers(dep),
            seconds=dep.timeout,
            where=self._where(dep),
        )
        async for _event, data in events:
            if data.strip() == "[DONE]":
                return
            try:
                parsed = orjson.loads(data)
            except orjson.JSONDecodeError:
                raise UpstreamFailed(f"{self._where(dep)} sent an event that is not JSON") from None
            if isinstance(parsed, dict) and "error" in parsed:
                err = parsed["error"]
                msg = err.get("message") if isinstance(err, dict) else str(err)
                raise UpstreamFailed(f"{self._where(dep)} failed mid-stream: {msg}")
            yield parsed
        # The stream closed without [DONE]: the upstream died mid-answer.
        raise UpstreamFailed(f"{self._where(dep)} closed the stream before it finished")

    async def embed(self, dep: Deployment, texts: list[str], body: dict[str, Any]) -> tuple[list[list[float]], int]:
        payload: dict[str, Any] = {"model": dep.model, "input": texts, "encoding_format": "float"}
        if body.get("dimensions"):
            payload["dimensions"] = body["dimensions"]
        data = await self._http.post_json(
            f"{dep.base_url}/embeddings",
            payload,
            headers=self._headers(dep),
            seconds=dep.timeout,
            where=self._where(dep),
        )
        items = sorted(data.get("data") or [], key=lambda d: d.get("index", 0))
        vectors = [_vector(d.get("embedding")) for d in items]
        if len(vectors) != len(texts):
            raise UpstreamFailed(f"{self._where(dep)} returned {len(vectors)} vectors for {len(texts)} inputs")
        return vectors, int((data.get("usage") or {}).get("prompt_tokens") or 0)

    async def list_models(self, template: Deployment) -> list[str]:
        data = await self._http.get_json(
            f"{template.base_url}/models", headers=self._headers(template), seconds=10.0, where=self._where(template)
        )
        return [str(m["id"]) for m in data.get("data") or [] if isinstance(m, dict) and m.get("id")]


def _vector(value: Any) -> list[float]:
    if isinstance(value, str):  # a server that answers base64 regardless
        import numpy as np

        return [float(x) for x in np.frombuffer(base64.b64decode(value), dtype="<f4")]
    if not isinstance(value, list):
        raise UpstreamFailed("an embedding in the upstream answer is neither a list nor base64")
    return [float(x) for x in value]
