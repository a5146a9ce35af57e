"""JSON bytes for anything a client may send: lone surrogates (legal JSON escapes, not UTF-8) and integers past
64 bits fall back to the standard library's ASCII-escaped encoding, so they round-trip instead of failing."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
from pydantic import BaseModel
from starlette.responses import Response


def dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError: surrogates, huge integers
        return json.dumps(value, ensure_ascii=True, separators=(",", ":")).encode()


# orjson reads an integer past 64 bits as a float, silently; a run of 20 digits is the cheap sign of one.
_LONG_INTEGER = re.compile(rb"\d{20}")


def loads(raw: bytes) -> Any:
    if _LONG_INTEGER.search(raw):
        return json.loads(raw)
    try:
        return orjson.loads(raw)
    except ValueError:  # an escaped lone surrogate, written by the fallback above
        return json.loads(raw)


def canonical(value: Any) -> bytes:
    """Key-sorted, ASCII-escaped JSON: the same bytes for the same value, whatever it holds."""
    return json.dumps(value, sort_keys=True, ensure_ascii=True, separators=(",", ":")).encode()


def render(out: BaseModel, status: int = 200) -> Response:
    return Response(dumps(out.model_dump(mode="json")), status_code=status, media_type="application/json")
