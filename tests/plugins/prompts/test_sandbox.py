"""The Jinja2 sandbox refuses known escapes, whether visible in the template (refused when it is saved) or
reached through variable values at render time (refused when it is rendered)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from plugins.prompts.config import PromptsConfig

URL = "/api/v1/prompts"
REFUSED = "urn:faas:problem:template-refused"
LIMIT = "urn:faas:problem:render-limit"
RENDER_SECONDS = PromptsConfig().render_timeout_seconds

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


async def test_only_bounded_globals_exist_and_none_is_a_variable(api: httpx.AsyncClient) -> None:
    template = "{% for i in range(n) %}{{ i }}{% endfor %} {{ dict(a=1)|tojson }} {{ range(3)|list|sum }}"
    r = await api.post(URL, json={"name": "globals", "template": template, "syntax": "jinja2"})
    assert r.status_code == 201, r.text
    assert (await api.get(f"{URL}/globals")).json()["versions"][0]["variables"] == ["n"]
    r = await api.post(f"{URL}/globals/render", json={"variables": {"n": 4}})
    assert r.status_code == 200 and r.json()["text"] == '0123 {"a": 1} 3', r.text
    # Jinja2's own bound: a range past 100,000 items is refused, not built.
    r = await api.post(f"{URL}/globals/render", json={"variables": {"n": 10**12}})
    assert r.status_code == 422 and r.json()["type"] == REFUSED and "100000" in r.json()["detail"], r.text
    # What range makes cheap to write stays bounded: a huge repetition before it is built, a long loop by the
    # render worker's time limit.
    for name, template in (
        ("rep", "{{ (range(100000)|list) * 100000 }}"),
        ("loops", "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}x"),
    ):
        assert (await api.post(URL, json={"name": name, "template": template, "syntax": "jinja2"})).status_code == 201
        r = await api.post(f"{URL}/{name}/render", json={"variables": {}})
        assert r.status_code == 422 and r.json()["type"] == LIMIT, r.text
    for name in ("cycler", "joiner", "namespace", "lipsum"):
        r = await api.post(URL, json={"name": name, "template": f"{{{{ {name}() }}}}", "syntax": "jinja2"})
        assert r.status_code == 422 and r.json()["type"] == REFUSED, r.text
        assert name in r.json()["detail"] and "range" in r.json()["detail"]
        assert (await api.get(f"{URL}/{name}")).status_code == 404  # nothing was saved


# A value that holds itself 8**7 times over: a few hundred bytes of template, ~75 MB of text once stringified.
NESTED = "{% set a = '" + "x" * 16 + "' %}" + "{% set a = [a, a, a, a, a, a, a, a] %}" * 7

# Each would allocate gigabytes in one C call (which the render deadline cannot interrupt), or nearly so.
HUGE_VALUES: list[tuple[str, dict[str, Any]]] = [
    ("{{ (((9**64)**64)**64)**64 }}", {}),  # 17 s in one C call before; one more **64 is hours
    ("{% set a = 9**64 %}" + "{% set a = a * a %}" * 30 + "{{ a }}", {}),  # hours: 30 doublings of the bits
    ("{{ x * x }}", {"x": 7**1000}),
    ("{{ 2 ** (10**100) }}", {}),
    ("{{ x|int(base=16) * 2 }}", {"x": "f" * 2000}),
    ("{{ 5|round(-1000000000) }}", {}),  # round(int, -n) computes 10**n
    ("{{ 1.5|round(1000000000, 'ceil') }}", {}),
    ("{{ ('ab' * 100000) * 100000 }}", {}),
    ("{{ ([[0] * 100000] * 100000)|length }}", {}),
    (NESTED + "{{ a }}", {}),
    (NESTED + "{{ a|string|length }}", {}),
    (NESTED + "{{ a|tojson|length }}", {}),
    (NESTED + "{{ a|join(',')|length }}", {}),
    (NESTED + "{{ (a ~ '')|length }}", {}),
    (NESTED + "{{ a|upper|length }}", {}),
    (NESTED + "{{ a|replace('x', 'y')|length }}", {}),
    ("{% set b %}{% for x in xs %}{{ s }}{% endfor %}{% endset %}{{ b|length }}", {"xs": [0] * 300, "s": "x" * 1000}),
    ("{% filter upper %}{% for x in xs %}{{ s }}{% endfor %}{% endfilter %}", {"xs": [0] * 300, "s": "x" * 1000}),
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
    assert r.json()["type"] in (REFUSED, LIMIT)
    assert "stopped" not in r.json()["detail"]  # refused up front, not stopped at the deadline
    assert time.monotonic() - started < RENDER_SECONDS


# Each is a 500 (RecursionError, or Python's own limits on the generated code) unless refused when saved.
TOO_DEEP = [
    "{{ " + "(" * 3000 + "x" + ")" * 3000 + " }}",
    "{{ " + "[" * 3000 + "x" + "]" * 3000 + " }}",
    "{{" * 20_000,  # unclosed: each {{ opens a dict literal
    "{{ " + "not " * 3000 + "x }}",
    "{{ " + "-" * 3000 + "x }}",
    "{{ x" + "|upper" * 3000 + " }}",
    "{{ x" + ".a" * 3000 + " }}",
    "{% for i in x %}" * 30 + "y" + "{% endfor %}" * 30,
    "{{ 1" + "0" * 5000 + " }}",
    "{{ x }}" * 14_000,  # past the token budget: compiling it would take seconds
]


@pytest.mark.parametrize("template", TOO_DEEP, ids=lambda t: t[:12] + f"...({len(t)})")
async def test_templates_too_deep_or_too_big_to_compile_are_refused_when_saved(
    api: httpx.AsyncClient, template: str
) -> None:
    r = await api.post(URL, json={"name": "deep", "template": template, "syntax": "jinja2"})
    assert r.status_code == 422, r.text[:1000]
    assert r.json()["type"] == REFUSED
    assert (await api.get(f"{URL}/deep")).status_code == 404


async def test_size_limited_operations_still_work_below_the_limits(api: httpx.AsyncClient) -> None:
    template = (
        "{{ [1, 2, 3]|batch(2, 0)|list }} {{ [1, 2, 3]|slice(2)|list }} {{ x|tojson(indent=2) }} "
        "{{ [1, 2]|sum(start=1) }} {{ a ~ 'b' }} {{ a + 'c' }} {{ ([1] * 250000)|length }}"
    )
    assert (await api.post(URL, json={"name": "ok", "template": template, "syntax": "jinja2"})).status_code == 201
    r = await api.post(f"{URL}/ok/render", json={"variables": {"x": [1], "a": "a"}})
    assert r.status_code == 200, r.text
    assert r.json()["text"] == "[[1, 2], [3, 0]] [[1, 2], [3]] [\n  1\n] 4 ab ac 250000"


async def test_arithmetic_and_text_below_the_limits_still_work(api: httpx.AsyncClient) -> None:
    template = (
        "{{ 9 ** 64 }} {{ (2 ** 2000 * 2 ** 2000)|string|length }} {{ 5|round(-1) }} {{ 3.14159|round(2) }} "
        "{% set b %}{% for x in xs %}{{ x }}{% endfor %}{% endset %}{{ b }} {{ [[1, 2], ['a']] }} "
        "{% filter upper %}{{ xs|join(',') }}{% endfilter %} {{ 7 // 2 }} {{ 7 % 4 }} {{ 2 ** -1 }} {{ 'ab' * 3 }}"
    )
    assert (await api.post(URL, json={"name": "ok", "template": template, "syntax": "jinja2"})).status_code == 201
    r = await api.post(f"{URL}/ok/render", json={"variables": {"xs": [1, 2, 3]}})
    assert r.status_code == 200, r.text
    assert r.json()["text"] == (f"{9**64} {len(str(2**4000))} 0 3.14 123 [[1, 2], ['a']] 1,2,3 3 3 0.5 ababab")
