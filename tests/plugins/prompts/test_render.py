"""Rendering over HTTP: simple and Jinja2 syntax, text and chat, and the errors a caller can act on."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from plugins.prompts.schemas import RenderIn
from tests.conftest import eventually
from tests.plugins.prompts.conftest import render_workers

URL = "/api/v1/prompts"


async def make(api: httpx.AsyncClient, template: Any, *, name: str = "p", **extra: Any) -> None:
    r = await api.post(URL, json={"name": name, "template": template, **extra})
    assert r.status_code == 201, r.text


async def render(api: httpx.AsyncClient, name: str = "p", **body: Any) -> httpx.Response:
    return await api.post(f"{URL}/{name}/render", json=body)


async def test_simple_syntax_substitutes_json_values_and_nothing_else(api: httpx.AsyncClient) -> None:
    await make(api, "{{s}} {{n}} {{b}} {{o}} \\{{literal}} {% raw %} ${x} {0}")
    r = await render(api, variables={"s": "{{o}}", "n": 2.5, "b": True, "o": {"k": [1]}})
    assert r.status_code == 200, r.text
    assert r.json()["text"] == '{{o}} 2.5 true {"k":[1]} {{literal}} {% raw %} ${x} {0}'
    assert r.json()["unknown_variables"] == []


@pytest.mark.parametrize(
    "template",
    ["{{ user.name }}", "{{ a + b }}", "{{ 1name }}", "Hello {{name", "{{ }}", "{{ ''.__class__ }}"],
)
async def test_simple_syntax_refuses_anything_but_plain_names(api: httpx.AsyncClient, template: str) -> None:
    r = await api.post(URL, json={"name": "p", "template": template})
    assert r.status_code == 422, r.text
    assert r.json()["type"] == "urn:faas:problem:template-refused"


async def test_missing_variable_is_400_naming_it(api: httpx.AsyncClient) -> None:
    await make(api, "{{a}} {{b}} {{c}}")
    r = await render(api, variables={"b": 1})
    assert r.status_code == 400
    problem = r.json()
    assert problem["type"] == "urn:faas:problem:template-variables"
    assert problem["missing"] == ["a", "c"] and "missing variables: a, c" in problem["detail"]


async def test_unknown_variable_is_400_unless_lenient(api: httpx.AsyncClient) -> None:
    await make(api, "Hi {{name}}")
    r = await render(api, variables={"name": "Ada", "nmae": "typo"})
    assert r.status_code == 400
    assert r.json()["unknown"] == ["nmae"] and "nmae" in r.json()["detail"]
    lenient = await render(api, variables={"name": "Ada", "nmae": "typo"}, strict=False)
    assert lenient.status_code == 200
    assert lenient.json()["text"] == "Hi Ada" and lenient.json()["unknown_variables"] == ["nmae"]


async def test_variables_are_counted_before_they_are_sorted_and_listed(api: httpx.AsyncClient) -> None:
    await make(api, "Hi {{name}}")
    extra = {f"v{i:05d}": 0 for i in range(10_000)}
    r = await render(api, variables={"name": "Ada", **extra})
    assert r.status_code == 400 and "at most 10,000 variables (10,001 given)" in r.json()["detail"]
    del extra["v00000"]
    r = await render(api, variables={"name": "Ada", **extra})
    assert r.status_code == 400 and len(r.json()["unknown"]) == 9_999
    assert "v00001, v00002" in r.json()["detail"] and "v00021" not in r.json()["detail"]
    assert "and 9,979 more" in r.json()["detail"]
    lenient = await render(api, variables={"name": "Ada", **extra}, strict=False)
    assert lenient.status_code == 200 and len(lenient.json()["unknown_variables"]) == 9_999


async def test_render_by_version_and_not_both_selectors(api: httpx.AsyncClient) -> None:
    await make(api, "one {{x}}")
    await api.post(f"{URL}/p/versions", json={"template": "two {{x}}"})
    assert (await render(api, version=1, variables={"x": 1})).json()["text"] == "one 1"
    assert (await render(api, version=3, variables={"x": 1})).status_code == 404
    assert (await render(api, version=1, label="latest", variables={"x": 1})).status_code == 422
    # The rule is in the document too, so a client generated from it cannot send both.
    schema = RenderIn.model_json_schema()
    assert schema["not"]["required"] == ["label", "version"]


async def test_a_version_of_the_wrong_shape_for_the_prompt_is_a_conflict(api: httpx.AsyncClient) -> None:
    await make(api, "one {{x}}")
    r = await api.post(f"{URL}/p/versions", json={"template": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 409 and "text prompt" in r.json()["detail"], r.text
    chat = await api.post(URL, json={"name": "c", "type": "chat", "template": [{"role": "user", "content": "x"}]})
    assert chat.status_code == 201
    r = await api.post(f"{URL}/c/versions", json={"template": "hi"})
    assert r.status_code == 409 and "list of messages" in r.json()["detail"], r.text
    assert (await api.get(f"{URL}/c")).json()["latest_version"] == 1


async def test_chat_prompt_renders_each_message(api: httpx.AsyncClient) -> None:
    messages = [
        {"role": "system", "content": "You are {{persona}}."},
        {"role": "user", "content": "Tell me about {{topic}}."},
    ]
    await make(api, messages, type="chat", config={"model": "m"})
    got = (await api.get(f"{URL}/p")).json()["versions"][0]
    assert got["variables"] == ["persona", "topic"] and got["template"] == messages
    r = await render(api, variables={"persona": "a pirate", "topic": "ships"})
    assert r.status_code == 200, r.text
    assert r.json()["messages"] == [
        {"role": "system", "content": "You are a pirate."},
        {"role": "user", "content": "Tell me about ships."},
    ]
    assert r.json()["text"] is None and r.json()["config"]["model"] == "m"


async def test_jinja2_prompt_with_logic(api: httpx.AsyncClient) -> None:
    template = (
        "{% for d in docs %}[{{ loop.index }}] {{ d.title | upper }}{% if not loop.last %}, {% endif %}{% endfor %}"
        "{{ ' (' ~ note ~ ')' if note is defined else '' }} {{ tags | join('/') }} {{ 'x'.upper() }}"
    )
    await make(api, template, syntax="jinja2")
    assert (await api.get(f"{URL}/p")).json()["versions"][0]["variables"] == ["docs", "note", "tags"]
    docs = [{"title": "a"}, {"title": "b"}]
    r = await render(api, variables={"docs": docs, "tags": ["t1", "t2"]})
    assert r.status_code == 200, r.text
    assert r.json()["text"] == "[1] A, [2] B t1/t2 X"
    r = await render(api, variables={"docs": [], "tags": [], "note": "n"})
    assert r.json()["text"] == " (n)  X"


async def test_jinja2_missing_variable_is_400_naming_it(api: httpx.AsyncClient) -> None:
    await make(api, "{{ a }} {{ b | default('-') }}", syntax="jinja2")
    assert (await render(api, variables={"a": 1})).json()["text"] == "1 -"
    r = await render(api, variables={"b": 1})
    assert r.status_code == 400 and r.json()["missing"] == ["a"]
    r = await render(api, variables={"a": 1, "zzz": 2})
    assert r.status_code == 400 and r.json()["unknown"] == ["zzz"]


async def test_output_size_is_capped(api: httpx.AsyncClient) -> None:
    await make(api, "{{ x * 100000 }}", syntax="jinja2", name="mul")
    await make(api, "{% for i in xs %}{% for j in xs %}{{ s }}{% endfor %}{% endfor %}", syntax="jinja2", name="loops")
    await make(api, "{{s}}{{s}}{{s}}", name="plain")
    r = await render(api, "mul", variables={"x": "abcdefgh"})
    assert r.status_code == 422 and r.json()["type"] == "urn:faas:problem:render-limit"
    r = await render(api, "loops", variables={"xs": list(range(300)), "s": "0123456789"})
    assert r.status_code == 422 and r.json()["type"] == "urn:faas:problem:render-limit"
    r = await render(api, "plain", variables={"s": "x" * 100_000})
    assert r.status_code == 422 and r.json()["type"] == "urn:faas:problem:render-limit"


async def test_slow_render_is_stopped_at_the_time_limit(api: httpx.AsyncClient) -> None:
    busy = "{% for a in xs %}{% for b in xs %}{% if a == b and a|string == 'q' %}x{% endif %}{% endfor %}{% endfor %}"
    await make(api, busy + "done", syntax="jinja2")
    before = render_workers()
    r = await render(api, variables={"xs": list(range(10_000))})
    assert r.status_code == 422, r.text
    assert r.json()["type"] == "urn:faas:problem:render-limit" and "1 s" in r.json()["detail"]
    # The worker process that ran it was killed, not left burning CPU behind the answer...
    assert len(before) == 1  # started by the create (it compiled the template), idle since

    async def killed() -> None:
        assert not set(before) & set(render_workers())

    await eventually(killed, within=5)
    # ...and the next render gets a fresh one.
    r = await render(api, variables={"xs": [1, 2]})
    assert r.status_code == 200 and r.json()["text"] == "done"
    assert set(render_workers()) and not set(render_workers()) & set(before)
