"""The default template syntax: logic-less `{{name}}` substitution, and nothing else.

A template is literal text with `{{ name }}` tags (letters, digits and `_`, not starting with a digit; spaces
inside the braces are allowed). `\\{{` writes a literal `{{`. Any other `{{` is an error at save time, so a
typo such as `{{ user.name }}` or an unclosed tag never renders silently. Rendering is plain string joining:
no expressions, no attribute access, no code; strings are inserted as they are, other JSON values as compact JSON.

Both halves are linear: parsing looks for each `{{` and then for its `}}` once (an unclosed `{{` is refused on the
spot, where a lazy `{{(.*?)}}` regex would rescan the rest of the text from every later `{{`), and rendering sums the
output's length from the pieces and the values before it joins anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from app.codec import dumps
from plugins.prompts.errors import RenderLimitExceeded, TemplateRefused

_OPEN = re.compile(r"\\\{\{|\{\{")
_NAME = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]{0,63})\s*")
_SHOWN = 60


@dataclass(frozen=True)
class Var:
    name: str


Piece = str | Var


def _line(source: str, index: int) -> int:
    return source.count("\n", 0, index) + 1


def parse(source: str) -> list[Piece]:
    pieces: list[Piece] = []
    literal: list[str] = []
    names: dict[str, Var] = {}
    pos = 0
    while (m := _OPEN.search(source, pos)) is not None:
        start = m.start()
        literal.append(source[pos:start])
        if m.group() == "\\{{":
            literal.append("{{")
            pos = m.end()
            continue
        end = source.find("}}", m.end())
        if end < 0:
            raise TemplateRefused(f"line {_line(source, start)}: '{{{{' is never closed with '}}}}'")
        name = _NAME.fullmatch(source, m.end(), end)
        if name is None:
            tag = source[start : end + 2]
            shown = tag if len(tag) <= _SHOWN else tag[: _SHOWN - 5] + "...}}"
            raise TemplateRefused(
                f"line {_line(source, start)}: {shown!r} is not a variable: write {{{{name}}}} with "
                "letters, digits and _ (or \\{{ for a literal {{); for logic, create the prompt with "
                'syntax "jinja2"'
            )
        _flush(pieces, literal)
        var = name.group(1)
        pieces.append(names.get(var) or names.setdefault(var, Var(var)))
        pos = end + 2
    literal.append(source[pos:])
    _flush(pieces, literal)
    return pieces


def _flush(pieces: list[Piece], literal: list[str]) -> None:
    text = literal[0] if len(literal) == 1 else "".join(literal)
    literal.clear()
    if text:
        pieces.append(text)


def variables(pieces: list[Piece]) -> list[str]:
    return sorted({p.name for p in pieces if isinstance(p, Var)})


def _text(value: Any) -> str:
    return value if isinstance(value, str) else dumps(value).decode()


def render(pieces: list[Piece], values: dict[str, Any], budget: int, limit: int) -> str:
    """Join the pieces; every variable must be in `values` (the caller checks and reports first).

    The output's length is known before anything is joined, so a big value used many times is refused without
    being copied: RenderLimitExceeded past `budget` characters (what is left of `limit`).
    """
    texts: dict[str, str] = {}  # each value's text once, however often it is used
    parts: list[str] = []  # references, not copies
    for p in pieces:
        if isinstance(p, str):
            parts.append(p)
        else:
            text = texts.get(p.name)
            if text is None:
                text = texts[p.name] = _text(values[p.name])
            parts.append(text)
    size = sum(map(len, parts))
    if size > budget:
        raise RenderLimitExceeded(f"the rendered output would exceed {limit:,} characters ({size + limit - budget:,})")
    return "".join(parts)
