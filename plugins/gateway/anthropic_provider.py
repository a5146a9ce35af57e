"""Anthropic's Messages API behind the OpenAI shape, translated both ways (tools and streaming included).

Requests: system/developer messages become `system`; assistant `tool_calls` become `tool_use` blocks; `tool`
messages become `tool_result` blocks in a user turn (consecutive ones merged, as Anthropic requires strictly
alternating turns); OpenAI tools and `tool_choice` map to their Anthropic forms. Responses and stream events map
back to OpenAI completions and chunks, with `stop_reason` → `finish_reason` and input/output tokens → usage.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from app.errors import UpstreamFailed
from plugins.gateway import wire
from plugins.gateway.catalog import Deployment
from plugins.gateway.upstream import HttpUpstream

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls"}


def _blocks(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    out: list[dict[str, Any]] = []
    for part in content:
        if part.get("type") == "text":
            out.append({"type": "text", "text": part.get("text", "")})
        elif part.get("type") == "image_url":
            url = (part.get("image_url") or {}).get("url", "")
            if url.startswith("data:") and ";base64," in url:
                media, data = url[5:].split(";base64,", 1)
                out.append({"type": "image", "source": {"type": "base64", "media_type": media, "data": data}})
            else:
                out.append({"type": "image", "source": {"type": "url", "url": url}})
    return out


def _args(raw: Any) -> Any:
    if isinstance(raw, dict):
        return raw
    try:
        return orjson.loads(raw or "{}")
    except orjson.JSONDecodeError:
        return {"_raw": raw}


def to_anthropic(dep: Deployment, body: dict[str, Any], *, stream: bool) -> dict[str, Any]:
    system: list[str] = []
    turns: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})

    for m in body.get("messages") or []:
        role = m.get("role")
        if role in ("system", "developer"):
            system.append(wire.text_of(m.get("content")))
        elif role == "user":
            add("user", _blocks(m.get("content")))
        elif role == "assistant":
            blocks = _blocks(m.get("content"))
            for call in m.get("tool_calls") or []:
                fn = call.get("function") or {}
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": call.get("id"),
                        "name": fn.get("name"),
                        "input": _args(fn.get("arguments")),
                    }
                )
            add("assistant", blocks)
        elif role in ("tool", "function"):
            add(
                "user",
                [
                    {
                        "type": "tool_result",
                        "tool_use_id": m.get("tool_call_id"),
                        "content": wire.text_of(m.get("content")),
                    }
                ],
            )
    out: dict[str, Any] = {
        "model": dep.model,
        "messages": turns,
        "max_tokens": body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS,
    }
    if system:
        out["system"] = "\n\n".join(system)
    for key in ("temperature", "top_p"):
        if body.get(key) is not None:
            out[key] = body[key]
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    tools = [t["function"] for t in body.get("tools") or [] if t.get("type") == "function" and t.get("function")]
    if tools:
        out["tools"] = [
            {
                "name": f["name"],
                "description": f.get("description", ""),
                "input_schema": f.get("parameters") or {"type": "object", "properties": {}},
            }
            for f in tools
        ]
    choice = body.get("tool_choice")
    if tools and choice is not None:
        if choice == "auto":
            out["tool_choice"] = {"type": "auto"}
        elif choice == "required":
            out["tool_choice"] = {"type": "any"}
        elif choice == "none":
            out["tool_choice"] = {"type": "none"}
        elif isinstance(choice, dict) and (choice.get("function") or {}).get("name"):
            out["tool_choice"] = {"type": "tool", "name": choice["function"]["name"]}
    if body.get("user"):
        out["metadata"] = {"user_id": str(body["user"])}
    if stream:
        out["stream"] = True
    return out


def from_anthropic(data: dict[str, Any]) -> dict[str, Any]:
    text: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in data.get("content") or []:
        if block.get("type") == "text":
            text.append(block.get("text", ""))
        elif block.get("type") == "tool_use":
            calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {
                        "name": block.get("name"),
                        "arguments": orjson.dumps(block.get("input") or {}).decode(),
                    },
                }
            )
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) if text or not calls else None}
    if calls:
        message["tool_calls"] = calls
    u = data.get("usage") or {}
    return wire.completion(
        id=str(data.get("id") or wire.new_id()),
        model=str(data.get("model") or ""),
        message=message,
        finish_reason=FINISH.get(data.get("stop_reason") or "", "stop"),
        usage=wire.usage(int(u.get("input_tokens") or 0), int(u.get("output_tokens") or 0)),
    )


class AnthropicProvider:
    def __init__(self, http: HttpUpstream) -> None:
        self._http = http

    @staticmethod
    def _headers(dep: Deployment) -> dict[str, str]:
        headers = {"anthropic-version": API_VERSION}
        if dep.api_key:
            headers["x-api-key"] = dep.api_key.get()
        return headers

    @staticmethod
    def _where(dep: Deployment) -> str:
        return f"deployment {dep.id} (anthropic {dep.model})"

    async def chat(self, dep: Deployment, body: dict[str, Any]) -> dict[str, Any]:
        data = await self._http.post_json(
            f"{dep.base_url}/v1/messages",
            to_anthropic(dep, body, stream=False),
            headers=self._headers(dep),
            seconds=dep.timeout,
            where=self._where(dep),
        )
        return from_anthropic(data)

    async def stream(self, dep: Deployment, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        events = self._http.stream_events(
            f"{dep.base_url}/v1/messages",
            to_anthropic(dep, body, stream=True),
            headers=self._headers(dep),
            seconds=dep.timeout,
            where=self._where(dep),
        )
        cid, model, prompt, completion = wire.new_id(), dep.model, 0, 0
        finish: str | None = None
        tool_index: dict[int, int] = {}  # Anthropic content block index -> OpenAI tool_calls index
        async for event, data in events:
            try:
                ev = orjson.loads(data)
            except orjson.JSONDecodeError:
                raise UpstreamFailed(f"{self._where(dep)} sent an event that is not JSON") from None
            kind = ev.get("type") or event
            if kind == "message_start":
                msg = ev.get("message") or {}
                cid, model = str(msg.get("id") or cid), str(msg.get("model") or model)
                prompt = int((msg.get("usage") or {}).get("input_tokens") or 0)
                yield wire.chunk(id=cid, model=model, delta={"role": "assistant", "content": ""})
            elif kind == "content_block_start":
                block = ev.get("content_block") or {}
                if block.get("type") == "tool_use":
                    idx = tool_index[ev.get("index", 0)] = len(tool_index)
                    call = {
                        "index": idx,
                        "id": block.get("id"),
                        "type": "function",
                        "function": {"name": block.get("name"), "arguments": ""},
                    }
                    yield wire.chunk(id=cid, model=model, delta={"tool_calls": [call]})
                elif block.get("type") == "text" and block.get("text"):
                    yield wire.chunk(id=cid, model=model, delta={"content": block["text"]})
            elif kind == "content_block_delta":
                delta = ev.get("delta") or {}
                if delta.get("type") == "text_delta":
                    yield wire.chunk(id=cid, model=model, delta={"content": delta.get("text", "")})
                elif delta.get("type") == "input_json_delta":
                    idx = tool_index.get(ev.get("index", 0), 0)
                    yield wire.chunk(
                        id=cid,
                        model=model,
                        delta={
                            "tool_calls": [{"index": idx, "function": {"arguments": delta.get("partial_json", "")}}]
                        },
                    )
            elif kind == "message_delta":
                finish = FINISH.get((ev.get("delta") or {}).get("stop_reason") or "", "stop")
                completion = int((ev.get("usage") or {}).get("output_tokens") or completion)
            elif kind == "message_stop":
                yield wire.chunk(id=cid, model=model, finish_reason=finish or "stop")
                yield wire.usage_chunk(id=cid, model=model, usage=wire.usage(prompt, completion))
                return
            elif kind == "error":
                err = ev.get("error") or {}
                raise UpstreamFailed(f"{self._where(dep)} failed mid-stream: {err.get('message') or err}")
        raise UpstreamFailed(f"{self._where(dep)} closed the stream before message_stop")

    async def list_models(self, template: Deployment) -> list[str]:
        data = await self._http.get_json(
            f"{template.base_url}/v1/models",
            headers=self._headers(template),
            seconds=10.0,
            where=self._where(template),
            params={"limit": "1000"},
        )
        return [str(m["id"]) for m in data.get("data") or [] if isinstance(m, dict) and m.get("id")]
