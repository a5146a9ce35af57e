"""JSON for anything a client may send (the prompts plugin's own copy: plugins share no internals).

Lone surrogates (legal JSON escapes, not UTF-8) and integers past 64 bits fall back to the standard library's
ASCII-escaped encoding, so they round-trip instead of failing.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from pydantic import BaseModel
from starlette.responses import Response


def dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError: surrogates, huge integers
        return json.dumps(value, ensure_ascii=True, separators=(",", ":")).encode()


def loads(raw: bytes | str) -> Any:
    try:
        return orjson.loads(raw)
    except ValueError:  # an escaped lone surrogate, written by the fallback above
        return json.loads(raw)


def ascii_json(value: Any) -> str:
    """ASCII-escaped JSON text: storable in any text column, whatever the value holds."""
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"))


def render(out: BaseModel, status: int = 200) -> Response:
    return Response(dumps(out.model_dump(mode="json")), status_code=status, media_type="application/json")
