"""Anthropic's Messages API behind the OpenAI shape, translated both ways (tools and streaming included).

The rule: a field of the OpenAI request is translated when Anthropic has an equivalent, and otherwise refused with a
400 that names the field (`param`) and the model, never dropped in silence. Translated: leading system/developer
messages → `system`; text, image and PDF parts → blocks; assistant `tool_calls` → `tool_use` blocks (their arguments
must be a JSON object); `tool` messages → `tool_result` blocks in a user turn (a list of text parts stays a list of
text blocks); turns of one role merged, as Anthropic requires alternating turns; an empty earlier message (it carries
nothing) left out; tools with `strict`; `tool_choice`; `parallel_tool_calls: false` →
`tool_choice.disable_parallel_tool_use`; `response_format` json_schema → `output_config.format`; `reasoning_effort`
→ `output_config.effort`; `user`/`safety_identifier` → `metadata.user_id`; `stop` → `stop_sequences`; `n` > 1 is
fanned out as parallel calls (`wire.fan_out`). Refused (each with its `param`): `seed`, `logprobs`/`top_logprobs`,
penalties, `logit_bias`, audio, file ids, a system message after the conversation started, a temperature above 1,
`response_format` json_object, and any other field Anthropic has no equivalent for; a field at its neutral value
(`logprobs: false`, `frequency_penalty: 0`...) is no request at all and passes. A model whose map entry sets
`drop_unsupported: true` drops what would be refused instead (a temperature is lowered to 1, a late system message
joins the others at the top), and the operator's log says what was dropped.

Responses and stream events map back to OpenAI completions and chunks, with `stop_reason` → `finish_reason`
(`refusal` → `content_filter`, `max_tokens` and `model_context_window_exceeded` → `length`) and input/output tokens
→ usage.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson

from app.errors import MalformedRequest, UpstreamFailed
from plugins.gateway import wire
from plugins.gateway.catalog import Deployment
from plugins.gateway.upstream import HttpUpstream

log = logging.getLogger("faas.gateway.anthropic")

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "stop",
}
# OpenAI fields translated below (or handled by the router and the service: `n`, `stream`, `stream_options`).
TRANSLATED = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "reasoning_effort",
        "user",
        "safety_identifier",
        "n",
        "stream",
        "stream_options",
    }
)
# Fields whose value here asks for nothing: present or not, the answer is the same.
NEUTRAL: dict[str, tuple[Any, ...]] = {
    "logprobs": (False,),
    "top_logprobs": (0,),
    "frequency_penalty": (0, 0.0),
    "presence_penalty": (0, 0.0),
    "logit_bias": ({},),
    "store": (False,),
    "metadata": ({},),
}
EFFORTS = ("low", "medium", "high")


class Unsupported(MalformedRequest):
    """A request field this model's provider has no equivalent for. Its text is the gateway's own (no provider
    words), so the tenant sees it whole (`router.public_error`)."""

    def __init__(self, param: str, why: str) -> None:
        super().__init__(
            f"`{param}` {why}; leave it out (or the operator may set drop_unsupported for this model)",
            extra={"param": param, "code": "unsupported_parameter", "unsupported": True},
        )


class _Translator:
    def __init__(self, dep: Deployment) -> None:
        self.dep = dep
        self.dropped: list[str] = []

    def refuse(self, param: str, why: str) -> None:
        """Refuse `param`, or note it dropped when the operator allowed that for this model."""
        if not self.dep.drop_unsupported:
            raise Unsupported(param, why)
        self.dropped.append(param)

    # ---- content ------------------------------------------------------------------------------------------

    def blocks(self, content: Any, where: str) -> list[dict[str, Any]]:
        if content is None:
            return []
        if isinstance(content, str):
            return [{"type": "text", "text": content}] if content else []
        out: list[dict[str, Any]] = []
        for j, part in enumerate(content):
            kind = part.get("type")
            here = f"{where}.content[{j}]"
            if kind == "text":
                if part.get("text"):
                    out.append({"type": "text", "text": part["text"]})
            elif kind == "image_url":
                url = (part.get("image_url") or {}).get("url", "")
                if url.startswith("data:") and ";base64," in url:
                    media, data = url[5:].split(";base64,", 1)
                    out.append({"type": "image", "source": {"type": "base64", "media_type": media, "data": data}})
                else:
                    out.append({"type": "image", "source": {"type": "url", "url": url}})
            elif kind == "file":
                block = _document(part.get("file") or {})
                if block is None:
                    self.refuse(
                        here,
                        "is a file part this model's provider cannot take (only a PDF or plain text "
                        "given inline as file_data is translated; a file_id is not)",
                    )
                else:
                    out.append(block)
            elif kind == "input_audio":
                self.refuse(here, "is audio input, which this model's provider does not accept")
            else:
                self.refuse(
                    here, f"is a content part of type {kind!r}, which this model's provider has no equivalent for"
                )
        return out

    def tool_input(self, raw: Any, param: str) -> dict[str, Any]:
        if isinstance(raw, dict):
            return raw
        try:
            value = orjson.loads(raw or "{}")
        except orjson.JSONDecodeError:
            value = None
        if not isinstance(value, dict):
            # Not droppable: the call is history the model must see as it was.
            raise Unsupported(
                param, "is not a JSON object, and this model's provider takes a tool call's input only as one"
            )
        return value

    # ---- the request --------------------------------------------------------------------------------------

    def messages(self, messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        system: list[dict[str, Any]] = []
        turns: list[dict[str, Any]] = []

        def add(role: str, blocks: list[dict[str, Any]]) -> None:
            if not blocks:
                return  # an empty message carries nothing, and Anthropic refuses empty content
            if turns and turns[-1]["role"] == role:
                turns[-1]["content"].extend(blocks)
            else:
                turns.append({"role": role, "content": blocks})

        for i, m in enumerate(messages):
            role, where = m.get("role"), f"messages[{i}]"
            if role in ("system", "developer"):
                if turns:
                    self.refuse(
                        f"{where}.role",
                        f"is a {role} message after the conversation started, which this "
                        "model's provider cannot place (its system prompt comes before every turn)",
                    )
                system.extend(self.blocks(m.get("content"), where))
                continue
            if m.get("name") and role in ("user", "assistant"):
                self.refuse(f"{where}.name", "has no equivalent at this model's provider")
            if role == "user":
                add("user", self.blocks(m.get("content"), where))
            elif role == "assistant":
                blocks = self.blocks(m.get("content"), where)
                for j, call in enumerate(m.get("tool_calls") or []):
                    fn = call.get("function") or {}
                    blocks.append(
                        {
                            "type": "tool_use",
                            "id": call.get("id"),
                            "name": fn.get("name"),
                            "input": self.tool_input(
                                fn.get("arguments"), f"{where}.tool_calls[{j}].function.arguments"
                            ),
                        }
                    )
                add("assistant", blocks)
            elif role in ("tool", "function"):
                result: dict[str, Any] = {"type": "tool_result", "tool_use_id": m.get("tool_call_id")}
                content = m.get("content")
                if isinstance(content, list):
                    parts = self.blocks(content, where)
                    if parts:
                        result["content"] = parts
                elif content:
                    result["content"] = str(content)
                add("user", [result])
        return system, turns

    def body(self, body: dict[str, Any], *, stream: bool) -> dict[str, Any]:
        for key, value in body.items():
            if key in TRANSLATED or value is None:
                continue
            if key in NEUTRAL and value in NEUTRAL[key]:
                continue
            self.refuse(key, "has no equivalent at this model's provider")
        system, turns = self.messages(body.get("messages") or [])
        out: dict[str, Any] = {
            "model": self.dep.model,
            "messages": turns,
            "max_tokens": body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS,
        }
        if system:
            # One text is sent as the string it was; several stay separate blocks, as they came.
            out["system"] = system[0]["text"] if len(system) == 1 and system[0]["type"] == "text" else system
        temperature = body.get("temperature")
        if temperature is not None:
            if temperature > 1:
                self.refuse("temperature", f"is {temperature:g}, above 1, the highest this model's provider accepts")
                temperature = 1.0
            out["temperature"] = temperature
        if body.get("top_p") is not None:
            out["top_p"] = body["top_p"]
        stop = body.get("stop")
        if stop:
            out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
        self.tools(body, out)
        self.response_format(body, out)
        effort = body.get("reasoning_effort")
        if effort is not None:
            if effort in EFFORTS:
                out.setdefault("output_config", {})["effort"] = effort
            else:
                self.refuse(
                    "reasoning_effort",
                    f"{effort!r} has no equivalent at this model's provider (it knows {', '.join(EFFORTS)})",
                )
        user = body.get("safety_identifier") or body.get("user")
        if user:
            out["metadata"] = {"user_id": str(user)}
        if stream:
            out["stream"] = True
        if self.dropped:
            log.info("deployment %s: dropped what it has no equivalent for: %s", self.dep.id, ", ".join(self.dropped))
        return out

    def tools(self, body: dict[str, Any], out: dict[str, Any]) -> None:
        tools: list[dict[str, Any]] = []
        for i, t in enumerate(body.get("tools") or []):
            f = t.get("function")
            if t.get("type", "function") != "function" or not f:
                self.refuse(f"tools[{i}].type", f"{t.get('type')!r} has no equivalent at this model's provider")
                continue
            tool: dict[str, Any] = {
                "name": f["name"],
                "input_schema": f.get("parameters") or {"type": "object", "properties": {}},
            }
            if f.get("description"):
                tool["description"] = f["description"]
            if f.get("strict") is not None:
                tool["strict"] = bool(f["strict"])
            tools.append(tool)
        if tools:
            out["tools"] = tools
        choice = body.get("tool_choice")
        mapped: dict[str, Any] | None = None
        if choice is not None:
            if choice == "auto":
                mapped = {"type": "auto"}
            elif choice == "required":
                mapped = {"type": "any"}
            elif choice == "none":
                mapped = {"type": "none"}
            elif isinstance(choice, dict) and (choice.get("function") or {}).get("name"):
                mapped = {"type": "tool", "name": choice["function"]["name"]}
            else:
                self.refuse("tool_choice", "has no equivalent at this model's provider")
        if body.get("parallel_tool_calls") is False and tools:
            mapped = mapped or {"type": "auto"}
            if mapped["type"] != "none":
                mapped["disable_parallel_tool_use"] = True
        if mapped is not None and tools:
            out["tool_choice"] = mapped

    def response_format(self, body: dict[str, Any], out: dict[str, Any]) -> None:
        fmt = body.get("response_format")
        if not fmt or fmt.get("type") == "text":
            return
        if fmt.get("type") == "json_schema" and isinstance((fmt.get("json_schema") or {}).get("schema"), dict):
            out.setdefault("output_config", {})["format"] = {
                "type": "json_schema",
                "schema": fmt["json_schema"]["schema"],
            }
            return
        self.refuse(
            "response_format",
            f"of type {fmt.get('type')!r} has no equivalent at this model's provider "
            "(use type json_schema with a schema)",
        )


def _document(file: dict[str, Any]) -> dict[str, Any] | None:
    data = file.get("file_data") or ""
    if not (isinstance(data, str) and data.startswith("data:") and ";base64," in data):
        return None
    media, payload = data[5:].split(";base64,", 1)
    if media == "application/pdf":
        source = {"type": "base64", "media_type": media, "data": payload}
    elif media == "text/plain":
        import base64
        import binascii

        try:
            text = base64.b64decode(payload, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        source = {"type": "text", "media_type": media, "data": text}
    else:
        return None
    block: dict[str, Any] = {"type": "document", "source": source}
    if file.get("filename"):
        block["title"] = str(file["filename"])
    return block


def to_anthropic(dep: Deployment, body: dict[str, Any], *, stream: bool) -> dict[str, Any]:
    return _Translator(dep).body(body, stream=stream)


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
