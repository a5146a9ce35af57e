"""Every failure on the OpenAI routes, in both gateway modes: OpenAI's `error` object, and a status line that the
body's own `status` agrees with (a client reading either sees the same answer)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import Deployer

CHAT = "/v1/chat/completions"
EMBED = "/v1/embeddings"
MODELS = "/v1/models"
RESPONSES = "/v1/responses"
USER = [{"role": "user", "content": "hi"}]
JSON = {"content-type": "application/json"}


def parts(kind: str) -> list[dict[str, Any]]:
    """A user message of one content part of this type, with nothing else in it."""
    return [{"role": "user", "content": [{"type": kind}]}]


# (method, path, keyword arguments of the request, status OpenAI would answer, `param` named, or None)
CASES: list[tuple[str, str, dict[str, Any], int, str | None]] = [
    ("POST", CHAT, {"json": {"model": "mock-1", "messages": []}}, 400, "messages"),
    ("POST", CHAT, {"json": {"messages": USER}}, 400, "model"),
    ("POST", CHAT, {"json": {"model": "mock-1", "messages": USER, "temperature": "hot"}}, 400, "temperature"),
    ("POST", CHAT, {"json": {"model": "mock-1", "messages": [{"role": "wizard", "content": "x"}]}}, 400, None),
    ("POST", CHAT, {"json": ["not", "an", "object"]}, 400, None),
    # A text part without its text is refused, not sent on as "" (nor an image part without its image).
    ("POST", CHAT, {"json": {"model": "mock-1", "messages": parts("text")}}, 400, "messages[0].content[0]"),
    ("POST", CHAT, {"json": {"model": "mock-1", "messages": parts("image_url")}}, 400, "messages[0].content[0]"),
    ("POST", RESPONSES, {"json": {"model": "mock-1", "input": parts("input_text")}}, 400, "input[0].content[0]"),
    ("POST", CHAT, {"content": b"{not json", "headers": JSON}, 400, None),
    ("POST", CHAT, {"content": b"", "headers": JSON}, 400, None),
    ("POST", CHAT, {"content": b"model=mock-1", "headers": {"content-type": "text/plain"}}, 415, None),
    ("POST", CHAT, {"json": {"model": "gpt-nope", "messages": USER}}, 404, None),
    ("GET", CHAT, {}, 405, None),
    ("POST", EMBED, {"json": {"model": "all-MiniLM-L6-v2", "input": []}}, 400, "input"),
    ("POST", EMBED, {"json": {"model": "all-MiniLM-L6-v2"}}, 400, "input"),
    ("POST", EMBED, {"json": {"input": ["a"], "encoding_format": "hex"}}, 400, "encoding_format"),
    ("POST", EMBED, {"content": b"[", "headers": JSON}, 400, None),
    ("POST", EMBED, {"json": {"model": "nope", "input": ["a"]}}, 404, None),
    ("PUT", EMBED, {"json": {"input": ["a"]}}, 405, None),
    ("POST", MODELS, {"json": {}}, 405, None),
    ("DELETE", MODELS, {}, 405, None),
]


def assert_openai_error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["status"] == r.status_code, body  # the problem members agree with the status line
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"] and error["type"], body
    return dict(error)


@pytest.mark.parametrize(("method", "path", "kw", "status", "param"), CASES)
async def test_malformed_input_is_an_openai_error_whose_status_agrees(
    deploy_app: Deployer, method: str, path: str, kw: dict[str, Any], status: int, param: str | None
) -> None:
    async with deploy_app() as d:
        _, c = await d.api()
        error = assert_openai_error(await c.request(method, path, **kw), status)
        if param is not None:
            assert error["param"] == param, error
        if status == 405:
            assert error["type"] == "invalid_request_error"


async def test_authentication_failures_agree_too(deploy_app: Deployer) -> None:
    async with deploy_app() as d:
        for headers in ({}, {"authorization": "Bearer faas_wrong"}):
            for method, path in (("GET", MODELS), ("POST", CHAT), ("POST", EMBED)):
                r = await d.client(**headers).request(method, path, json={"model": "mock-1", "messages": USER})
                assert assert_openai_error(r, 401)["type"] == "authentication_error"


async def test_a_body_over_the_size_limit_is_an_openai_413(deploy_app: Deployer) -> None:
    async with deploy_app(env={"FAAS_MAX_BODY_BYTES": "2048"}) as d:
        _, c = await d.api()
        big = {"model": "mock-1", "messages": [{"role": "user", "content": "x" * 5000}]}
        error = assert_openai_error(await c.post(CHAT, json=big), 413)  # refused by its content-length
        assert "FAAS_MAX_BODY_BYTES" in error["message"]
        # The platform routes keep their problem+json, with the same status.
        p = await c.post("/api/v1/gateway/chat", json={"messages": big["messages"]})
        assert p.status_code == 413 == p.json()["status"] and "error" not in p.json()
        assert p.headers["content-type"] == "application/problem+json"


async def test_the_platform_routes_still_answer_422_for_the_same_body(deploy_app: Deployer) -> None:
    async with deploy_app() as d:
        _, c = await d.api()
        r = await c.post("/api/v1/gateway/chat", json={"messages": []})
        assert r.status_code == 422 == r.json()["status"] and r.json()["type"] == "urn:faas:problem:invalid-input"


async def test_the_document_lists_the_statuses_the_openai_routes_send(deploy_app: Deployer) -> None:
    async with deploy_app() as d:
        doc = (await d.client().get("/openapi.json")).json()
    for path in (CHAT, EMBED):
        codes = set(doc["paths"][path]["post"]["responses"])
        assert {"400", "413", "415"} <= codes and "422" not in codes, codes  # a failed validation is a 400 here
    assert "422" in doc["paths"]["/api/v1/gateway/chat"]["post"]["responses"]  # and a 422 on the platform routes
