"""The simple `{{name}}` syntax (plugins/prompts/simple.py): what it accepts, and that hostile input costs
time linear in its size and memory bounded by the output budget."""

from __future__ import annotations

import time
import tracemalloc

import pytest

from plugins.prompts.errors import RenderLimitExceeded, TemplateRefused
from plugins.prompts.simple import Var, parse, render, variables

LIMIT = 256 * 1024


def test_tags_escapes_and_literals() -> None:
    pieces = parse("a {{x}} b {{ y_1 }}\\{{z}} }} {{x}}")
    assert pieces == ["a ", Var("x"), " b ", Var("y_1"), "{{z}} }} ", Var("x")]
    assert variables(pieces) == ["x", "y_1"]
    assert render(pieces, {"x": 1, "y_1": {"k": [True]}}, LIMIT, LIMIT) == 'a 1 b {"k":[true]}{{z}} }} 1'


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("x\n{{ a", "line 2: '{{' is never closed"),
        ("{{{x}}", "'{{{x}}' is not a variable"),
        ("{{ a.b }}", "'{{ a.b }}' is not a variable"),
        ("{{ " + "a " * 1000 + "}}", "'{{ a a a"),
    ],
)
def test_anything_but_a_closed_plain_name_is_refused(template: str, message: str) -> None:
    with pytest.raises(TemplateRefused, match=message.replace("{", r"\{").replace(".", r"\.")) as refused:
        parse(template)
    assert len(refused.value.detail) < 300  # a huge tag is not echoed back whole


@pytest.mark.parametrize("size", [40_000, 100_000])
def test_an_unclosed_tag_is_refused_at_once_whatever_the_size(size: int) -> None:
    # A lazy `{{(.*?)}}` rescanned the rest of the text from every `{{`: 11 s for 40,000 characters, 60 s for
    # 100,000. One pass takes well under a millisecond; the bound leaves a margin of a hundred times.
    started = time.perf_counter()
    with pytest.raises(TemplateRefused, match="line 1: '\\{\\{' is never closed"):
        parse("{{" * (size // 2))
    assert time.perf_counter() - started < 0.1


def test_a_big_value_used_many_times_is_refused_before_it_is_copied() -> None:
    pieces = parse("{{x}}" * 200)
    value = "y" * 1_000_000
    tracemalloc.start()
    try:
        with pytest.raises(RenderLimitExceeded, match="200,000,000"):
            render(pieces, {"x": value}, LIMIT, LIMIT)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000  # joining first grew memory by 200 MB before the size was checked


def test_the_budget_is_what_is_left_of_the_limit() -> None:
    pieces = parse("{{x}}{{x}}")
    assert render(pieces, {"x": "ab"}, 4, LIMIT) == "abab"
    with pytest.raises(RenderLimitExceeded, match=f"exceed {LIMIT:,} characters"):
        render(pieces, {"x": "ab"}, 3, LIMIT)
