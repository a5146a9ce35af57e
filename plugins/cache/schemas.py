"""Request and response types of the cache plugin: the single source for validation and the OpenAPI document.

Namespaces and keys travel in URL paths, so their alphabet is restricted (no `/`, no spaces) and checked here;
a namespace may not start with `-`, which keeps `/-/...` free for the plugin's own routes and internal namespaces.
Neither may be made only of dots: HTTP clients resolve `.` and `..` segments, so `DELETE .../ns/.` would arrive
as `DELETE .../ns` and clear the namespace.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import Field

from app.schemas import Schema, json_integer

NAMESPACE_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.~-]{0,63}$"
# Some character other than a dot (no look-ahead: pydantic's regex engine has none); the length is max_length's.
KEY_PATTERN = r"^\.*[A-Za-z0-9_~:@+=-][A-Za-z0-9_.~:@+=-]*$"
MAX_TTL_SECONDS = 30 * 24 * 3600


TtlSeconds = Annotated[int, Field(ge=1, le=MAX_TTL_SECONDS), json_integer]

Namespace = Annotated[
    str,
    Field(pattern=NAMESPACE_PATTERN, description="1-64 of A-Z a-z 0-9 _ . ~ -, starting with A-Z a-z 0-9 _"),
]
Key = Annotated[
    str,
    Field(
        pattern=KEY_PATTERN,
        max_length=256,
        description="1-256 characters from A-Z a-z 0-9 _ . ~ : @ + = -, not only dots",
    ),
]


class EntryPath(Schema):
    namespace: Namespace
    key: Key


class NamespacePath(Schema):
    namespace: Namespace


class EntryPut(Schema):
    value: Any = Field(description="Any JSON value (null included)")
    ttl_seconds: TtlSeconds | None = Field(
        default=None,
        description="Seconds until the entry expires (1 s to 30 days); default FAAS_CACHE_DEFAULT_TTL (1 day)",
    )


class EntryPublic(Schema):
    namespace: str
    key: str
    value: Any
    expires_at: datetime = Field(description="When the entry stops being served")


class HitMiss(Schema):
    hits: int = 0
    misses: int = 0


class CacheStats(Schema):
    backend: str = Field(description="`postgres` or `redis`")
    kv: HitMiss = Field(description="Key/value GETs")
    llm: HitMiss = Field(description="LLM-response lookups by exact request")
    semantic: HitMiss = Field(description="LLM-response lookups by meaning (only those that reached the semantic step)")


class CachedResponse(Schema):
    """A cached LLM response. `similarity` is None for an exact hit and the cosine similarity for a semantic one."""

    response: dict[str, Any]
    similarity: float | None = None


class ResponseLookup(Schema):
    request: dict[str, Any] = Field(description="The OpenAI-style chat request body")
    semantic: bool = Field(default=False, strict=True, description="Also match single-turn prompts by meaning")
    threshold: float | None = Field(default=None, strict=True, ge=0.0, le=1.0, description="Minimum cosine similarity")


class ResponseLookupResult(Schema):
    hit: bool
    response: dict[str, Any] | None = None
    similarity: float | None = None


class ResponseStore(Schema):
    request: dict[str, Any]
    response: dict[str, Any]
    ttl_seconds: TtlSeconds
    semantic: bool | None = Field(
        default=None,
        strict=True,
        description="Index the prompt for semantic lookups: true always, false never, "
        "null when this deployment recently made a semantic lookup for the same request",
    )
