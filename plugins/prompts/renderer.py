"""Where prompt templates are compiled and rendered: never anywhere that could stall the event loop.

- A simple template of at most INLINE_CHARS characters (all messages together) is parsed and rendered on the
  event loop: both are linear, the output's length is known before it is joined, and the size bound keeps the
  work around a millisecond at worst. Parsed versions are cached per replica by (tenant, prompt id, version).
- Everything else (every Jinja2 template, bigger simple ones) runs in a worker process of `WorkerPool`, with a
  time limit (FAAS_PROMPTS_COMPILE_TIMEOUT_SECONDS to compile, FAAS_PROMPTS_RENDER_TIMEOUT_SECONDS to render) past
  which the worker is killed and replaced, and a memory cap; each worker caches compiled templates by source.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from typing import Any

from app.errors import Unavailable
from plugins.prompts import templates, worker
from plugins.prompts.config import PromptsConfig
from plugins.prompts.errors import RenderLimitExceeded, TemplateRefused, TemplateVariablesError
from plugins.prompts.pool import JobTimeout, PoolBusy, PoolClosed, WorkerLost, WorkerPool, WorkerStartFailed
from plugins.prompts.templates import CompiledPrompt, Rendered

INLINE_CHARS = 4096
INLINE_CACHE_SIZE = 512


def _inline(syntax: str, units: list[tuple[str | None, str]]) -> bool:
    return syntax == "simple" and sum(len(source) for _, source in units) <= INLINE_CHARS


class PromptRenderer:
    def __init__(self, config: PromptsConfig) -> None:
        self.config = config
        settings = {"max_output_chars": config.max_output_chars, "memory_mb": config.render_memory_mb}
        self.pool = WorkerPool(
            functools.partial(worker.command, settings),
            size=config.render_workers,
            queue_seconds=config.render_queue_seconds,
            # JSON takes at most 12 bytes a character (an astral one as two \uXXXX escapes, when the codec falls
            # back to ASCII for a lone surrogate); the rest is roles and punctuation.
            max_reply_bytes=12 * config.max_output_chars + 1024 * 1024,
        )
        self._inline: OrderedDict[tuple[str, str, int], CompiledPrompt] = OrderedDict()

    async def aclose(self) -> None:
        await self.pool.aclose()

    async def compile(self, *, type: str, syntax: str, template: Any) -> list[str]:
        """Vet the template and return its variables; TemplateRefused if it is invalid or too costly to compile."""
        if _inline(syntax, templates.sources(type, template)):
            return templates.compile_prompt(None, type=type, syntax=syntax, template=template).variables
        job = {"op": "compile", "type": type, "syntax": syntax, "template": template}
        reply = await self._run(job, self.config.compile_timeout_seconds)
        return [str(v) for v in reply["variables"]]

    async def render(
        self,
        *,
        key: tuple[str, str, int],
        type: str,
        syntax: str,
        template: Any,
        variables: list[str],
        values: dict[str, Any],
        strict: bool,
    ) -> Rendered:
        """Render the version stored under `key` (tenant, prompt id, version), whose template uses `variables`."""
        unknown = templates.check_variables(variables, syntax, values, strict=strict)
        prompt = self._inline.get(key)
        if prompt is not None:  # the fast path: a small simple template, parsed before
            self._inline.move_to_end(key)
            texts = templates.render_units(prompt, values, self.config.max_output_chars)
            return templates.assemble(type, [u.role for u in prompt.units], texts, unknown)
        units = templates.sources(type, template)
        if _inline(syntax, units):
            prompt = self._parsed(key, type, syntax, template)
            texts = templates.render_units(prompt, values, self.config.max_output_chars)
        else:
            job = {"op": "render", "type": type, "syntax": syntax, "template": template, "values": values}
            reply = await self._run(job, self.config.render_timeout_seconds)
            texts = reply["texts"]
            if not isinstance(texts, list) or len(texts) != len(units) or not all(isinstance(t, str) for t in texts):
                raise RuntimeError("a render worker answered something other than one text per message")
        return templates.assemble(type, [role for role, _ in units], texts, unknown)

    def _parsed(self, key: tuple[str, str, int], type: str, syntax: str, template: Any) -> CompiledPrompt:
        prompt = templates.compile_prompt(None, type=type, syntax=syntax, template=template)
        self._inline[key] = prompt
        while len(self._inline) > INLINE_CACHE_SIZE:
            self._inline.popitem(last=False)
        return prompt

    async def _run(self, job: dict[str, Any], seconds: float) -> dict[str, Any]:
        compiling = job["op"] == "compile"
        doing = "compiling the template" if compiling else "rendering"
        error = TemplateRefused if compiling else RenderLimitExceeded
        try:
            reply = await self.pool.run(job, seconds=seconds)
        except JobTimeout:
            raise error(f"{doing} took longer than {seconds:g} s and was stopped") from None
        except WorkerLost:
            raise error(f"{doing} stopped the worker process it ran in (past its memory limit, or killed)") from None
        except (PoolBusy, PoolClosed, WorkerStartFailed) as exc:
            raise Unavailable(
                f"prompt rendering is unavailable: {exc}; retry shortly", headers={"Retry-After": "1"}
            ) from None
        if reply.get("ok"):
            return reply
        detail = str(reply.get("detail") or "the template failed")
        kind = reply.get("kind")
        if kind == "variables":
            missing, unknown = reply.get("missing"), reply.get("unknown")
            raise TemplateVariablesError(
                detail,
                missing=[str(v) for v in missing] if isinstance(missing, list) else [],
                unknown=[str(v) for v in unknown] if isinstance(unknown, list) else [],
            )
        if kind == "limit":
            raise RenderLimitExceeded(detail)
        if kind == "refused":
            raise TemplateRefused(detail)
        raise RuntimeError(f"a render worker failed unexpectedly: {detail}")
