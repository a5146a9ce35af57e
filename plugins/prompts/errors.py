"""Errors of the prompts plugin, each a `ServiceError` with its own stable problem `type`.

They subclass the foundation's classes, so a remote caller rebuilds the same class from the problem JSON.
"""

from __future__ import annotations

from typing import Any

from app.errors import InvalidInput, MalformedRequest


class TemplateRefused(InvalidInput):
    """The template does not compile, or uses a construct the sandbox does not allow (422)."""

    slug, title = "template-refused", "Template refused"


class RenderLimitExceeded(InvalidInput):
    """Rendering went past the output size or time limit (422)."""

    slug, title = "render-limit", "Render limit exceeded"


class TemplateVariablesError(MalformedRequest):
    """The render call's variables do not fit the template: `missing` and `unknown` name them (400)."""

    slug, title = "template-variables", "Template variables do not match"

    def __init__(self, detail: str | None = None, *, missing: list[str], unknown: list[str], **kw: Any) -> None:
        extra = {"missing": missing, "unknown": unknown, **kw.pop("extra", {})}
        super().__init__(detail, extra=extra, **kw)
