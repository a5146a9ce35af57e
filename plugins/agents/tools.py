"""The built-in tools an agent may call, and which of them a deployment offers.

A tool is offered only when the agent lists it in `capabilities` and its plugin is open here (mounted direct, or
remote): `rag_search` (rag), `render_prompt` (prompts), `ml_predict` (ml); `http_request` needs an allowlist in the
agent's config. Each tool calls its plugin through the registry, so it works the same with that plugin remote.
A tool's failure (a ServiceError, bad arguments) is its result (`{"error": ...}`), which the model reads and may
correct; it does not end the run.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from app.errors import InvalidInput, ServiceError
from app.plugins import ServiceKey, Services
from plugins.agents.netguard import HttpGuard
from plugins.agents.schemas import AgentConfig
from plugins.ml.interface import ML
from plugins.prompts.interface import PROMPTS
from plugins.rag.interface import RAG, SearchIn

RESULT_MAX_CHARS = 16_000  # of a tool's result as the model reads it (the step records it whole)

SPECS: dict[str, dict[str, Any]] = {
    "rag_search": {
        "description": "Search a document collection; returns the best passages with their scores.",
        "parameters": {
            "type": "object",
            "properties": {
                "collection_id": {"type": "string", "description": "the collection to search"},
                "query": {"type": "string", "description": "what to look for"},
                "top_k": {"type": "integer", "description": "passages to return (1-20)"},
            },
            "required": ["collection_id", "query"],
        },
    },
    "render_prompt": {
        "description": "Render a stored prompt template with variables.",
        "parameters": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "label": {"type": "string", "description": "a label such as production (default: latest)"},
                "variables": {"type": "object"},
            },
            "required": ["name"],
        },
    },
    "ml_predict": {
        "description": "Predict with a registered ML model for rows of features.",
        "parameters": {
            "type": "object",
            "properties": {
                "model": {"type": "string"},
                "rows": {"type": "array", "items": {"type": "object"}, "description": "rows keyed by feature"},
            },
            "required": ["model", "rows"],
        },
    },
    "http_request": {
        "description": "Fetch a URL on an allowed host (GET, or POST with a body).",
        "parameters": {
            "type": "object",
            "properties": {
                "url": {"type": "string"},
                "method": {"type": "string", "enum": ["GET", "POST"]},
                "body": {"type": "string"},
            },
            "required": ["url"],
        },
    },
}
PLUGIN_OF: dict[str, ServiceKey[Any]] = {"rag_search": RAG, "render_prompt": PROMPTS, "ml_predict": ML}


def offered(capabilities: list[str], config: AgentConfig, services: Services) -> list[str]:
    """The tools this run may call, in the agent's order."""
    out: list[str] = []
    for name in capabilities:
        if name == "http_request":
            if config.http_allowlist:
                out.append(name)
        elif name in PLUGIN_OF and services.optional(PLUGIN_OF[name]) is not None:
            out.append(name)
    return out


def definitions(names: list[str]) -> list[dict[str, Any]]:
    return [{"type": "function", "function": {"name": n, **SPECS[n]}} for n in names]


def _str(args: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    value = args.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or "\x00" in value:
        raise InvalidInput(f"argument {key!r} must be a non-empty string")
    return value


async def call(
    name: str,
    args: Any,
    *,
    tenant_id: str,
    allowed: list[str],
    services: Services,
    config: AgentConfig,
    guard: HttpGuard,
) -> Any:
    """Run one tool call; its JSON result (an error is `{"error": detail}`)."""
    try:
        if name not in allowed:
            raise InvalidInput(f"no tool named {name!r} is available; use one of {', '.join(allowed) or 'none'}")
        if not isinstance(args, dict):
            raise InvalidInput("the arguments must be a JSON object")
        return await _call(name, args, tenant_id=tenant_id, services=services, config=config, guard=guard)
    except ServiceError as exc:
        return {"error": exc.detail}
    except ValidationError as exc:
        return {"error": f"invalid arguments: {exc.errors(include_url=False)[0]['msg']}"}


async def _call(
    name: str, args: dict[str, Any], *, tenant_id: str, services: Services, config: AgentConfig, guard: HttpGuard
) -> Any:
    if name == "rag_search":
        collection_id, query = _str(args, "collection_id"), _str(args, "query")
        assert collection_id is not None and query is not None
        top_k = args.get("top_k", 5)
        request = SearchIn(query=query, top_k=top_k if isinstance(top_k, int) and 1 <= top_k <= 20 else 5)
        out = await services.get(RAG).search(tenant_id=tenant_id, collection_id=collection_id, request=request)
        return {"hits": [{"document_id": h.document_id, "text": h.text, "score": h.score} for h in out.hits]}
    if name == "render_prompt":
        prompt = _str(args, "name")
        assert prompt is not None
        variables = args.get("variables") or {}
        if not isinstance(variables, dict):
            raise InvalidInput("argument 'variables' must be an object")
        rendered = await services.get(PROMPTS).render(
            tenant_id=tenant_id, name=prompt, label=_str(args, "label", required=False), variables=variables
        )
        return rendered.model_dump(mode="json", include={"name", "version", "text", "messages"})
    if name == "ml_predict":
        model, rows = _str(args, "model"), args.get("rows")
        assert model is not None
        if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows) or len(rows) > 1000:
            raise InvalidInput("argument 'rows' must be 1 to 1,000 objects keyed by feature")
        predicted = await services.get(ML).predict(tenant_id=tenant_id, name=model, rows=rows)
        return predicted.model_dump(mode="json", exclude_none=True)
    if name == "http_request":
        url = _str(args, "url")
        assert url is not None
        method = args.get("method") or "GET"
        if method not in ("GET", "POST"):
            raise InvalidInput("argument 'method' must be GET or POST")
        body = args.get("body")
        if body is not None and not isinstance(body, str):
            raise InvalidInput("argument 'body' must be a string")
        return await guard.fetch(url, method=method, body=body, allowlist=config.http_allowlist)
    raise InvalidInput(f"no tool named {name!r}")
