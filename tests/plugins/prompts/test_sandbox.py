"""The Jinja2 sandbox refuses known escapes, whether visible in the template (refused when it is saved) or
reached through variable values at render time (refused when it is rendered)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from plugins.prompts.errors import RenderLimitExceeded
from plugins.prompts.sandbox import RENDER_SECONDS, run_limited

URL = "/api/v1/prompts"
REFUSED = "urn:faas:problem:template-refused"

SAVED_ESCAPES = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ self }}",
    "{{ self.__init__.__globals__ }}",
    "{{ lipsum.__globals__['os'] }}",
    "{{ x['__class__'] }}",
    "{{ x|attr('__class__') }}",
    "{{ x|map(attribute='__class__')|list }}",
    "{{ x|selectattr('__class__')|list }}",
    "{{ '%s' | format(x) }}",
    "{{ _ }}",
    "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}",
    "{% include 'x.html' %}",
    "{% import 'os' as os %}",
    "{% extends 'base' %}",
    "{{ x|pprint }}",
    "{% if %}",
]


RENDERED_ESCAPES: list[tuple[str, dict[str, Any]]] = [
    ("{{ '{0.__class__.__mro__}'.format(x) }}", {"x": 1}),
    ("{{ s.format(x) }}", {"s": "{0.__class__}", "x": 1}),
    ("{{ s.format_map(x) }}", {"s": "{a.__class__}", "x": {"a": 1}}),
    ("{{ '%s' % x }}", {"x": 1}),
    ("{{ x[k] }}", {"x": "abc", "k": "__class__"}),
    ("{{ x|map(attribute=k)|list }}", {"x": ["a"], "k": "__class__"}),
    ("{{ x.pop() }}", {"x": [1, 2]}),
    ("{{ x.update(y) }}", {"x": {}, "y": {"a": 1}}),
    ("{{ x.center(10000000) }}", {"x": "a"}),
    ("{{ 2 ** 100000 }}", {}),
]


@pytest.fixture
def mode() -> str:
    """The sandbox is the direct service's own: these many cases run direct (test_render covers remote errors)."""
    return "direct"


@pytest.mark.parametrize("template", SAVED_ESCAPES)
async def test_escape_in_the_template_is_refused_when_saved(api: httpx.AsyncClient, template: str) -> None:
    r = await api.post(URL, json={"name": "evil", "template": template, "syntax": "jinja2"})
    assert r.status_code == 422, r.text
    assert r.json()["type"] == REFUSED
    assert (await api.get(f"{URL}/evil")).status_code == 404
    # A chat prompt's messages are checked the same way, and the error says which message.
    messages = [{"role": "system", "content": "fine"}, {"role": "user", "content": template}]
    r = await api.post(URL, json={"name": "evil", "template": messages, "type": "chat", "syntax": "jinja2"})
    assert r.status_code == 422 and r.json()["detail"].startswith("message 2 (user)")


@pytest.mark.parametrize(("template", "variables"), RENDERED_ESCAPES)
async def test_escape_through_values_is_refused_when_rendered(
    api: httpx.AsyncClient, template: str, variables: dict[str, Any]
) -> None:
    r = await api.post(URL, json={"name": "evil", "template": template, "syntax": "jinja2"})
    assert r.status_code in (201, 422), r.text
    if r.status_code == 201:
        r = await api.post(f"{URL}/evil/render", json={"variables": variables})
    assert r.status_code == 422, r.text
    assert r.json()["type"] in (REFUSED, "urn:faas:problem:render-limit")
    assert "<class" not in r.text  # nothing of Python's object model leaks into the answer


async def test_globals_are_gone(api: httpx.AsyncClient) -> None:
    for name in ("range", "cycler", "joiner", "namespace", "lipsum", "dict"):
        r = await api.post(URL, json={"name": name, "template": f"{{{{ {name} }}}}", "syntax": "jinja2"})
        assert r.status_code == 201
        # The name is just an ordinary (missing) variable: nothing from Python is behind it.
        assert (await api.get(f"{URL}/{name}")).json()["versions"][0]["variables"] == [name]
        r = await api.post(f"{URL}/{name}/render", json={"variables": {}})
        assert r.status_code == 400 and r.json()["missing"] == [name]


# Each would allocate gigabytes in one C call (which the render deadline cannot interrupt), or nearly so.
HUGE_VALUES: list[tuple[str, dict[str, Any]]] = [
    ("{{ [1]|batch(2000000000, 0)|list|length }}", {}),
    ("{{ [1]|slice(2000000000, 0)|list|length }}", {}),
    ('{{ ([a]*250000)|map("upper")|list|length }}', {"a": "x" * 100}),
    ('{{ x|map("batch", 2000000000, 0)|list|length }}', {"x": [[1]]}),
    ("{{ x|sum(start=[])|length }}", {"x": [[1] * 100] * 100}),
    ("{{ x|tojson(indent=1000000000) }}", {"x": [[1]]}),
    ('{% set s = "x" * 200000 %}{% set t = s ~ s %}{{ t|length }}', {}),
    ('{% set s = "x" * 200000 %}{% set t = s + s %}{{ t|length }}', {}),
    ("{% set s = x * 200000 %}{% set t = s + s %}{{ t|length }}", {"x": [1]}),
]


@pytest.mark.parametrize(("template", "variables"), HUGE_VALUES)
async def test_huge_values_are_refused_before_they_are_built(
    api: httpx.AsyncClient, template: str, variables: dict[str, Any]
) -> None:
    r = await api.post(URL, json={"name": "huge", "template": template, "syntax": "jinja2"})
    assert r.status_code == 201, r.text
    started = time.monotonic()
    r = await api.post(f"{URL}/huge/render", json={"variables": variables})
    assert r.status_code == 422, r.text
    assert r.json()["type"] in (REFUSED, "urn:faas:problem:render-limit")
    assert time.monotonic() - started < RENDER_SECONDS  # refused up front, not stopped at the deadline


async def test_size_limited_operations_still_work_below_the_limits(api: httpx.AsyncClient) -> None:
    template = (
        "{{ [1, 2, 3]|batch(2, 0)|list }} {{ [1, 2, 3]|slice(2)|list }} {{ x|tojson(indent=2) }} "
        "{{ [1, 2]|sum(start=1) }} {{ a ~ 'b' }} {{ a + 'c' }} {{ ([1] * 250000)|length }}"
    )
    assert (await api.post(URL, json={"name": "ok", "template": template, "syntax": "jinja2"})).status_code == 201
    r = await api.post(f"{URL}/ok/render", json={"variables": {"x": [1], "a": "a"}})
    assert r.status_code == 200, r.text
    assert r.json()["text"] == "[[1, 2], [3, 0]] [[1, 2], [3]] [\n  1\n] 4 ab ac 250000"


async def test_running_out_of_memory_is_a_render_limit() -> None:
    with pytest.raises(RenderLimitExceeded, match="memory"):
        await run_limited(lambda: bytearray(2**62))
