"""Compile a prompt version's template (text, or one template per chat message) and render it with variables.

Compiling validates: a simple template's tags, or a Jinja2 template's syntax tree against the sandbox rules.
It also derives the variables. Rendering checks the given variables against them first: a missing one is a 400
naming it; an unknown one (given but unused) is a 400 too unless the caller asks for a lenient render, which
lists it in `unknown_variables`, because a misspelt name would otherwise silently render the wrong prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jinja2 import Template

from plugins.prompts import sandbox, simple
from plugins.prompts.errors import TemplateRefused, TemplateVariablesError


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


def _sources(type: str, template: Any) -> list[tuple[str | None, str]]:
    if type == "text":
        if not isinstance(template, str):
            raise TemplateRefused("a text prompt's template is a string; chat prompts take a list of messages")
        return [(None, template)]
    if not isinstance(template, list) or not all(isinstance(m, dict) for m in template):
        raise TemplateRefused('a chat prompt\'s template is a list of {"role", "content"} messages')
    return [(m["role"], m["content"]) for m in template]


def compile_prompt(env: sandbox.PromptSandbox, *, type: str, syntax: str, template: Any) -> CompiledPrompt:
    units: list[Unit] = []
    names: set[str] = set()
    for i, (role, source) in enumerate(_sources(type, template)):
        try:
            if syntax == "simple":
                pieces = simple.parse(source)
                names.update(simple.variables(pieces))
                units.append(Unit(role, source, pieces))
            else:
                names.update(sandbox.check(env, source))
                units.append(Unit(role, source, env.from_string(source)))
        except TemplateRefused as exc:
            where = f"message {i + 1} ({role}): " if role else ""
            raise TemplateRefused(where + exc.detail) from None
    return CompiledPrompt(type=type, syntax=syntax, variables=sorted(names), units=units)


def _check_variables(prompt: CompiledPrompt, values: dict[str, Any], *, strict: bool) -> list[str]:
    unknown = sorted(set(values) - set(prompt.variables))
    # Jinja2 variables may be optional (`{{ x | default('') }}`): those missing are found while rendering.
    missing = [v for v in prompt.variables if v not in values] if prompt.syntax == "simple" else []
    if missing or (strict and unknown):
        parts = []
        if missing:
            parts.append(f"missing variable{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")
        if strict and unknown:
            parts.append(
                f"unknown variable{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)} "
                f"(the template uses: {', '.join(prompt.variables) or 'none'}; send strict: false to allow extras)"
            )
        raise TemplateVariablesError("; ".join(parts), missing=missing, unknown=unknown if strict else [])
    return unknown


def _render_units(prompt: CompiledPrompt, values: dict[str, Any]) -> list[str]:
    budget = sandbox.MAX_OUTPUT_CHARS
    out: list[str] = []
    for unit in prompt.units:
        if isinstance(unit.compiled, Template):
            text = sandbox.stream_limited(unit.compiled.generate(values), budget)
        else:
            text = simple.render(unit.compiled, values, budget, sandbox.MAX_OUTPUT_CHARS)
        budget -= len(text)
        out.append(text)
    return out


async def render_prompt(prompt: CompiledPrompt, values: dict[str, Any], *, strict: bool = True) -> Rendered:
    unknown = _check_variables(prompt, values, strict=strict)
    if prompt.syntax == "simple":
        texts = _render_units(prompt, values)  # linear in the output, which is capped: no thread needed
    else:
        texts = await sandbox.run_limited(lambda: _render_units(prompt, values))
    if prompt.type == "text":
        return Rendered(text=texts[0], messages=None, unknown=unknown)
    messages = [{"role": u.role or "user", "content": t} for u, t in zip(prompt.units, texts, strict=True)]
    return Rendered(text=None, messages=messages, unknown=unknown)
