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

    def __init__(
        self,
        detail: str | None = None,
        *,
        missing: list[str] | None = None,
        unknown: list[str] | None = None,
        **kw: Any,
    ) -> None:
        # Rebuilt from problem JSON (remote mode), the two lists come back inside `extra`.
        given = dict(kw.pop("extra", None) or {})
        extra = {
            "missing": given.pop("missing", []) if missing is None else missing,
            "unknown": given.pop("unknown", []) if unknown is None else unknown,
            **given,
        }
        super().__init__(detail, extra=extra, **kw)
