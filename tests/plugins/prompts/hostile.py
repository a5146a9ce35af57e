"""Hostile prompts: each one, before the render workers, held the event loop for seconds to hours, grew memory by
hundreds of megabytes, or crashed the request with a 500. Shared by tests/plugins/prompts/test_stall.py and
benchmarks/prompts_hostile.py.

Each case creates a prompt and, if that is accepted, renders it; `expect` is the status and problem type the
hostile request must get (at create time when `render` is None, else at render time).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

REFUSED = "urn:faas:problem:template-refused"
LIMIT = "urn:faas:problem:render-limit"


@dataclass(frozen=True)
class Hostile:
    id: str
    create: dict[str, Any]
    render: dict[str, Any] | None
    expect: tuple[int, str]
    before: str  # what it did before the render workers


def _jinja(template: str) -> dict[str, Any]:
    return {"template": template, "syntax": "jinja2"}


NESTED_LIST = "{% set a = '" + "x" * 32 + "' %}" + "{% set a = [a, a, a, a, a, a, a, a] %}" * 8 + "{{ a }}"
BUSY_LOOP = "{% for a in xs %}{% for b in xs %}{% if a == b and a|string == 'q' %}x{% endif %}{% endfor %}{% endfor %}"
HOARD = "{% set a = [" + ", ".join(["s|list"] * 20) + "] %}{{ a|length }}"
CHAT = [{"role": "user", "content": "{{ x }} and " * 8000} for _ in range(100)]  # 9.6 MB, 4.8 million tokens

CASES = [
    Hostile(
        "integer power chain",
        _jinja("{{ (((9**64)**64)**64)**64 }}"),
        {"variables": {}},
        (422, LIMIT),
        "17 s in one C call (one more **64: hours)",
    ),
    Hostile(
        "big multiplication",
        _jinja("{% set a = 9**64 %}" + "{% set a = a * a %}" * 30 + "{{ a }}"),
        {"variables": {}},
        (422, LIMIT),
        "hours: the bits double 30 times",
    ),
    Hostile(
        "string repetition",
        _jinja("{{ ('ab' * 100000) * 100000 }}"),
        {"variables": {}},
        (422, LIMIT),
        "20 GB in one C call",
    ),
    Hostile(
        "list repetition",
        _jinja("{{ ([[0] * 100000] * 100000)|length }}"),
        {"variables": {}},
        (422, LIMIT),
        "10 billion references",
    ),
    Hostile(
        "nested list literal",
        _jinja(NESTED_LIST),
        {"variables": {}},
        (422, LIMIT),
        "a 600 MB string from 600 bytes of template",
    ),
    Hostile(
        "3,000 nested brackets",
        _jinja("{{ " + "(" * 3000 + "x" + ")" * 3000 + " }}"),
        None,
        (422, REFUSED),
        "500 (RecursionError)",
    ),
    Hostile(
        "1 MB x 200",
        {"template": "{{x}}" * 200},
        {"variables": {"x": "y" * 1_000_000}},
        (422, LIMIT),
        "+194 MB before the 422",
    ),
    Hostile(
        "5 MB x 20,000",
        {"template": "{{x}}" * 20_000},
        {"variables": {"x": "y" * 5_000_000}},
        (422, LIMIT),
        "MemoryError, 500",
    ),
    Hostile("40k '{{' (simple)", {"template": "{{" * 20_000}, None, (422, REFUSED), "11 s (quadratic regex)"),
    Hostile("100k '{{' (simple)", {"template": "{{" * 50_000}, None, (422, REFUSED), "60 s (quadratic regex)"),
    Hostile("100k '{{' (jinja2)", _jinja("{{" * 50_000), None, (422, REFUSED), "500 (RecursionError)"),
    Hostile(
        "large Jinja2 chat prompt",
        {"type": "chat", "template": CHAT, "syntax": "jinja2"},
        None,
        (422, REFUSED),
        "20 s+ per compile, compiled twice per create",
    ),
    Hostile(
        "slow loop",
        _jinja(BUSY_LOOP),
        {"variables": {"xs": list(range(10_000))}},
        (422, LIMIT),
        "a thread burning CPU for 1 s, holding the GIL",
    ),
    Hostile(
        "memory hoard",
        _jinja(HOARD),
        {"variables": {"s": "x" * 4_000_000}},
        (422, LIMIT),
        "640 MB of the server's memory (past the default 512 MB cap of a worker)",
    ),
]
