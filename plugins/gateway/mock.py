"""The `mock` provider: a deterministic chat model (`mock-1`) for tests and offline demos.

It answers `You said: <last user text>`; given tools (and `tool_choice` not "none") it calls one, with
arguments filled from the tool's JSON schema; after a tool result it reports what the tool returned. Output
is cut at `max_tokens` words (finish_reason "length"). Streaming sends the same text word by word. Nothing
random except ids, so tests can assert on exact text.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from app import codec
from plugins.gateway import wire
from plugins.gateway.catalog import Deployment


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for m in reversed(messages):
        if m.get("role") == "user":
            return wire.text_of(m.get("content"))
    return ""


def _placeholder(schema: dict[str, Any], text: str) -> Any:
    kind = schema.get("type")
    if schema.get("enum"):
        return schema["enum"][0]
    if kind == "integer" or kind == "number":
        return 1
    if kind == "boolean":
        return True
    if kind == "array":
        return []
    if kind == "object":
        return {}
    return text or "mock"


def _tool_call(body: dict[str, Any]) -> dict[str, Any] | None:
    tools = [t for t in body.get("tools") or [] if t.get("type") == "function" and t.get("function")]
    choice = body.get("tool_choice")
    messages = body.get("messages") or []
    if not tools or choice == "none" or not messages or messages[-1].get("role") != "user":
        return None
    fn = tools[0]["function"]
    if isinstance(choice, dict) and choice.get("function", {}).get("name"):
        wanted = choice["function"]["name"]
        fn = next((t["function"] for t in tools if t["function"].get("name") == wanted), fn)
    params = fn.get("parameters") or {}
    props: dict[str, Any] = params.get("properties") or {}
    required = params.get("required") or list(props)
    text = _last_user_text(messages)
    args = {k: _placeholder(props.get(k, {}), text) for k in required}
    return {
        "id": "call_" + wire.new_id("mock").split("-")[1][:16],
        "type": "function",
        "function": {"name": fn.get("name", "tool"), "arguments": codec.dumps(args).decode()},
    }


def _reply(body: dict[str, Any]) -> tuple[dict[str, Any], str, list[str]]:
    """The assistant message, the finish reason, and the words streamed."""
    call = _tool_call(body)
    if call is not None:
        return {"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls", []
    messages = body.get("messages") or []
    last = messages[-1] if messages else {}
    if last.get("role") == "tool":
        text = f"The tool returned: {wire.text_of(last.get('content'))}"
    else:
        text = f"You said: {_last_user_text(messages)}"
    words = text.split(" ")
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    finish = "stop"
    if limit and len(words) > limit:
        words, finish = words[:limit], "length"
    return {"role": "assistant", "content": " ".join(words)}, finish, words


class MockProvider:
    async def chat(self, dep: Deployment, body: dict[str, Any]) -> dict[str, Any]:
        message, finish, words = _reply(body)
        completion_tokens = len(words) or 8
        return wire.completion(
            id=wire.new_id(),
            model=dep.model,
            message=message,
            finish_reason=finish,
            usage=wire.usage(wire.estimate_prompt_tokens(body), completion_tokens),
        )

    async def stream(self, dep: Deployment, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        message, finish, words = _reply(body)
        cid = wire.new_id()
        yield wire.chunk(id=cid, model=dep.model, delta={"role": "assistant", "content": ""})
        for i, word in enumerate(words):
            yield wire.chunk(id=cid, model=dep.model, delta={"content": word if i == 0 else " " + word})
        for index, call in enumerate(message.get("tool_calls") or []):
            head = {"index": index, "id": call["id"], "type": "function"}
            fn = call["function"]
            yield wire.chunk(
                id=cid,
                model=dep.model,
                delta={"tool_calls": [{**head, "function": {"name": fn["name"], "arguments": ""}}]},
            )
            args = fn["arguments"]
            half = len(args) // 2
            for part in (args[:half], args[half:]):
                yield wire.chunk(
                    id=cid, model=dep.model, delta={"tool_calls": [{"index": index, "function": {"arguments": part}}]}
                )
        yield wire.chunk(id=cid, model=dep.model, finish_reason=finish)
        yield wire.usage_chunk(
            id=cid, model=dep.model, usage=wire.usage(wire.estimate_prompt_tokens(body), len(words) or 8)
        )
