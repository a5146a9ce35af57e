"""The one JSON codec: what every module uses to turn values into JSON bytes and back.

orjson is fast but refuses two things a client may legally send: a lone surrogate (`"\\ud800"` is a valid JSON
escape, not valid UTF-8) and an integer past 64 bits (orjson writes it not at all and reads it as a float). Both
fall back to the standard library, which escapes the first and keeps the second exact, so any JSON a client sent
comes back unchanged. `canonical` gives one byte string per value (sorted keys), for hashing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:  # pydantic is imported by `dump_model` only: the prompts' template workers import this module
    from pydantic import BaseModel

# orjson reads an integer past 64 bits as a float, silently; a run of 20 digits is the cheap sign of one.
_LONG_INTEGER = re.compile(rb"\d{20}")


def dumps(value: Any, *, default: Callable[[Any], Any] | None = None) -> bytes:
    """Compact JSON bytes of `value` (`default` converts what JSON has no type for, as in `json.dumps`)."""
    try:
        return orjson.dumps(value, default=default)
    except TypeError:  # orjson.JSONEncodeError: a lone surrogate or an integer past 64 bits
        return json.dumps(value, ensure_ascii=True, separators=(",", ":"), default=default).encode()


def loads(raw: bytes | str) -> Any:
    data = raw.encode() if isinstance(raw, str) else raw
    if _LONG_INTEGER.search(data):
        return json.loads(data)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:  # an escaped lone surrogate (orjson refuses it; the standard library reads it)
        return json.loads(data)


def dump_model(model: BaseModel) -> bytes:
    """A pydantic model as JSON bytes (its own serializer, or `dumps` when the model holds a lone surrogate)."""
    from pydantic_core import PydanticSerializationError

    try:
        return model.model_dump_json().encode()
    except PydanticSerializationError:
        return dumps(model.model_dump(mode="json"))


def canonical(value: Any) -> bytes:
    """Key-sorted, ASCII-escaped JSON: the same bytes for the same value, whatever it holds."""
    return json.dumps(value, sort_keys=True, ensure_ascii=True, separators=(",", ":")).encode()


def ascii_json(value: Any) -> str:
    """ASCII-escaped JSON text: storable in any PostgreSQL text or jsonb column, whatever the value holds."""
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"))
