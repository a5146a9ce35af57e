"""Keyset pagination: a cursor names the last key seen, and a `Page` carries the results and the next cursor.

The cursor is the key itself, restricted to a safe alphabet (`CURSOR_PATTERN`, also declared in the OpenAPI
document), so that any cursor matching the documented pattern is a valid position and none can inject SQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Generic, TypeVar

from pydantic import Field

from app.errors import InvalidInput
from app.schemas import Schema

T = TypeVar("T")
CURSOR_PATTERN = r"^[A-Za-z0-9_.:~-]{1,200}$"
_CURSOR = re.compile(CURSOR_PATTERN)


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


class PageQuery(Schema):
    """`?limit=&cursor=` for every list route."""

    limit: int = Field(default=20, ge=1, le=100, description="Items per page")
    cursor: str | None = Field(default=None, pattern=CURSOR_PATTERN, description="`next_cursor` of the previous page")


def encode_cursor(key: str) -> str:
    if not _CURSOR.match(key):
        raise ValueError(f"key {key!r} cannot be a cursor: keep paginated keys within {CURSOR_PATTERN}")
    return key


def decode_cursor(cursor: str | None) -> str | None:
    if not cursor:
        return None
    if not _CURSOR.match(cursor):
        raise InvalidInput("cursor is not one this API issued: pass back next_cursor unchanged")
    return cursor
