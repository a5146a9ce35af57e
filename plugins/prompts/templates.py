"""Compile a prompt version's template (text, or one template per chat message) and render it with variables.

Compiling validates: a simple template's tags, or a Jinja2 template's tokens and syntax tree against the sandbox
rules. It also derives the variables. Rendering checks the given variables against them first: a missing one is a
400 naming it; an unknown one (given but unused) is a 400 too unless the caller asks for a lenient render, which
lists it in `unknown_variables`, because a misspelt name would otherwise silently render the wrong prompt.

Everything here is synchronous and pure: `plugins.prompts.renderer` decides where it runs (on the event loop for
small simple templates, in a worker process with a time and memory limit for everything else).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from jinja2 import Template

from plugins.prompts import sandbox, simple
from plugins.prompts.budget import stream_limited
from plugins.prompts.errors import TemplateRefused, TemplateVariablesError

MAX_VARIABLES = 10_000  # given to one render
LISTED = 20  # unknown variables named in an error's detail (its `unknown` field has them all)


@dataclass(frozen=True)
class Unit:
    role: str | None  # None for a text prompt
    source: str
    compiled: list[simple.Piece] | Template


@dataclass(frozen=True)
class CompiledPrompt:
    type: str
    syntax: str
    variables: list[str]
    units: list[Unit]


@dataclass(frozen=True)
class Rendered:
    text: str | None
    messages: list[dict[str, str]] | None
    unknown: list[str]


@dataclass(frozen=True)
class _Entry:
    variables: list[str]
    compiled: list[simple.Piece] | Template
    tokens: int


class UnitCache:
    """Compiled templates by (syntax, source), least recently used first out, bounded in entries and characters.

    Keyed by the text itself: the same source always compiles to the same thing, whoever saved it.
    """

    def __init__(self, *, entries: int = 256, chars: int = 16 * 1024 * 1024) -> None:
        self._entries = entries
        self._chars = chars
        self._size = 0
        self._data: OrderedDict[tuple[str, str], _Entry] = OrderedDict()

    def get(self, key: tuple[str, str]) -> _Entry | None:
        entry = self._data.get(key)
        if entry is not None:
            self._data.move_to_end(key)
        return entry

    def put(self, key: tuple[str, str], entry: _Entry) -> None:
        if key in self._data or len(key[1]) > self._chars:
            return
        self._data[key] = entry
        self._size += len(key[1])
        while len(self._data) > self._entries or self._size > self._chars:
            old, _ = self._data.popitem(last=False)
            self._size -= len(old[1])


def sources(type: str, template: Any) -> list[tuple[str | None, str]]:
    if type == "text":
        if not isinstance(template, str):
            raise TemplateRefused("a text prompt's template is a string; chat prompts take a list of messages")
        return [(None, template)]
    if not isinstance(template, list) or not all(isinstance(m, dict) for m in template):
        raise TemplateRefused('a chat prompt\'s template is a list of {"role", "content"} messages')
    return [(m["role"], m["content"]) for m in template]


def _compile_unit(env: sandbox.PromptSandbox | None, syntax: str, source: str, tokens_left: int) -> _Entry:
    if syntax == "simple":
        pieces = simple.parse(source)
        return _Entry(simple.variables(pieces), pieces, 0)
    if env is None:
        raise ValueError("a Jinja2 template needs the sandbox environment")
    checked = sandbox.compile_checked(env, source, tokens_left=tokens_left)
    return _Entry(checked.variables, checked.template, checked.tokens)


def compile_prompt(
    env: sandbox.PromptSandbox | None, *, type: str, syntax: str, template: Any, cache: UnitCache | None = None
) -> CompiledPrompt:
    units: list[Unit] = []
    names: set[str] = set()
    tokens_left = sandbox.MAX_TEMPLATE_TOKENS
    for i, (role, source) in enumerate(sources(type, template)):
        try:
            entry = cache.get((syntax, source)) if cache is not None else None
            if entry is None:
                entry = _compile_unit(env, syntax, source, tokens_left)
                if cache is not None:
                    cache.put((syntax, source), entry)
            elif entry.tokens > tokens_left:
                raise TemplateRefused(f"the template has more than {sandbox.MAX_TEMPLATE_TOKENS:,} tokens")
            tokens_left -= entry.tokens
        except TemplateRefused as exc:
            where = f"message {i + 1} ({role}): " if role else ""
            raise TemplateRefused(where + exc.detail) from None
        names.update(entry.variables)
        units.append(Unit(role, source, entry.compiled))
    return CompiledPrompt(type=type, syntax=syntax, variables=sorted(names), units=units)


def check_variables(variables: list[str], syntax: str, values: dict[str, Any], *, strict: bool) -> list[str]:
    """The unknown variables among `values`; TemplateVariablesError for missing ones, and unknown ones if strict."""
    if len(values) > MAX_VARIABLES:  # sorting and listing them would hold the event loop
        raise TemplateVariablesError(
            f"a render takes at most {MAX_VARIABLES:,} variables ({len(values):,} given)", missing=[], unknown=[]
        )
    unknown = sorted(set(values) - set(variables))
    # Jinja2 variables may be optional (`{{ x | default('') }}`): those missing are found while rendering.
    missing = [v for v in variables if v not in values] if syntax == "simple" else []
    if missing or (strict and unknown):
        parts = []
        if missing:
            parts.append(f"missing variable{'s' if len(missing) > 1 else ''}: {_listed(missing)}")
        if strict and unknown:
            parts.append(
                f"unknown variable{'s' if len(unknown) > 1 else ''}: {_listed(unknown)} "
                f"(the template uses: {_listed(variables) or 'none'}; send strict: false to allow extras)"
            )
        raise TemplateVariablesError("; ".join(parts), missing=missing, unknown=unknown if strict else [])
    return unknown


def _listed(names: list[str]) -> str:
    more = f" and {len(names) - LISTED:,} more" if len(names) > LISTED else ""
    return ", ".join(names[:LISTED]) + more


def render_units(prompt: CompiledPrompt, values: dict[str, Any], limit: int) -> list[str]:
    """Each unit's text; RenderLimitExceeded once all of them together pass `limit` characters."""
    budget = limit
    out: list[str] = []
    for unit in prompt.units:
        if isinstance(unit.compiled, Template):
            text = stream_limited(unit.compiled.generate(values), budget, limit)
        else:
            text = simple.render(unit.compiled, values, budget, limit)
        budget -= len(text)
        out.append(text)
    return out


def assemble(type: str, roles: list[str | None], texts: list[str], unknown: list[str]) -> Rendered:
    if type == "text":
        return Rendered(text=texts[0], messages=None, unknown=unknown)
    messages = [{"role": role or "user", "content": t} for role, t in zip(roles, texts, strict=True)]
    return Rendered(text=None, messages=messages, unknown=unknown)
