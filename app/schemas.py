"""Base types for request and response schemas, shared by the core and every plugin.

`Schema` forbids unknown fields (a misspelt field is an error, not silently dropped). `json_integer` makes an int
field an integer as JSON Schema means it: `5` and `5.0`, never `true` or `"5"` (pydantic's lax mode would take
both), so validation and the OpenAPI document agree.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


class Schema(BaseModel):
    """Base for request/response types: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


def _json_integer(value: Any) -> Any:
    if isinstance(value, bool | str):
        raise ValueError("must be a JSON integer")
    return value


# Constraints go before it (`Annotated[int, Field(ge=1), json_integer]`): after it, pydantic writes them into the
# JSON Schema as raw `ge`/`le` instead of `minimum`/`maximum`.
json_integer = BeforeValidator(_json_integer)
# Up to PostgreSQL's int4, the type of every counter and version column: a larger number is a 422 the document
# states, not a value the database refuses.
PositiveInt = Annotated[int, Field(ge=1, le=2**31 - 1), json_integer]


# An identifier this API issued (`ten_…`, `key_…`, `job_…`) as a path parameter: a safe alphabet, so that a path
# segment that cannot be an id is a 422 naming the rule rather than a lookup.
ResourceId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:~-]{0,127}$", description="An id this API issued")]
