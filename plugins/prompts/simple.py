"""The default template syntax: logic-less `{{name}}` substitution, and nothing else.

A template is literal text with `{{ name }}` tags (letters, digits and `_`, not starting with a digit; spaces
inside the braces are allowed). `\\{{` writes a literal `{{`. Any other `{{` is an error at save time, so a
typo such as `{{ user.name }}` or an unclosed tag never renders silently. Rendering is plain string joining:
no expressions, no attribute access, no code; strings are inserted as they are, other JSON values as compact JSON.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from app.codec import dumps
from plugins.prompts.errors import TemplateRefused

_TOKEN = re.compile(r"\\\{\{|\{\{(.*?)\}\}", re.S)
_NAME = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]{0,63})\s*")


@dataclass(frozen=True)
class Var:
    name: str


Piece = str | Var


def _line(source: str, index: int) -> int:
    return source.count("\n", 0, index) + 1


def parse(source: str) -> list[Piece]:
    pieces: list[Piece] = []
    pos = 0
    for m in _TOKEN.finditer(source):
        literal = source[pos : m.start()]
        _check_literal(source, literal, pos)
        pieces.append(literal)
        if m.group(0) == "\\{{":
            pieces.append("{{")
        else:
            name = _NAME.fullmatch(m.group(1))
            if name is None:
                raise TemplateRefused(
                    f"line {_line(source, m.start())}: {m.group(0)!r} is not a variable: write {{{{name}}}} with "
                    "letters, digits and _ (or \\{{ for a literal {{); for logic, create the prompt with "
                    'syntax "jinja2"'
                )
            pieces.append(Var(name.group(1)))
        pos = m.end()
    _check_literal(source, source[pos:], pos)
    pieces.append(source[pos:])
    return [p for p in pieces if p != ""]


def _check_literal(source: str, literal: str, offset: int) -> None:
    at = literal.find("{{")
    if at >= 0:
        raise TemplateRefused(f"line {_line(source, offset + at)}: '{{{{' is never closed with '}}}}'")


def variables(pieces: list[Piece]) -> list[str]:
    return sorted({p.name for p in pieces if isinstance(p, Var)})


def _text(value: Any) -> str:
    return value if isinstance(value, str) else dumps(value).decode()


def render(pieces: list[Piece], values: dict[str, Any]) -> str:
    """Join the pieces; every variable must be in `values` (the caller checks and reports first)."""
    return "".join(p if isinstance(p, str) else _text(values[p.name]) for p in pieces)
