"""Request and response types of the gateway: the OpenAI-compatible wire shapes and the platform routes.

The OpenAI shapes accept fields this module does not name (`extra="allow"`): a client may send any parameter
the OpenAI API knows (`seed`, `logit_bias`, `response_format`...) and it is passed to an OpenAI-compatible
upstream untouched. The platform types (`ChatIn`, `GenerateIn`, policy, usage) are strict like every other
schema of the platform.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from app.errors import PayloadTooLarge
from app.json_limits import json_values
from app.pagination import CURSOR_PATTERN
from app.schemas import ResourceId, Schema
from plugins.gateway.vectors import MAX_DIMENSIONS, MAX_INPUTS, MAX_OUTPUT_VALUES

_NUMERIC = {int, float, int | None, float | None}
# Counts the database stores (and adds up) as 32/64-bit integers: larger ones are refused, not a 500.
MAX_INT32 = 2**31 - 1
# Choices one chat request may ask for (`n`), OpenAI's own limit.
MAX_CHOICES = 128
# Messages in one chat request: far more than any context window holds in real turns, few enough that parsing
# a body of tiny ones stays small (600,000 of them cost +522 MB; validation stops at the limit).
MAX_MESSAGES = 10_000
# JSON values in one request body (see `app.json_limits`): 10,000 messages of a few fields each, with room for tools.
MAX_JSON_VALUES = 100_000
# Models one policy may list: every public model of a large catalog, with room to spare.
MAX_ALLOWED_MODELS = 1_000
# A public model name as a policy stores it: PostgreSQL text holds no NUL, so the document refuses one.
ModelName = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00]+$")]


class Numbers(BaseModel):
    """JSON numbers only for number fields: `true` is not 1 and "5" is not 5 (pydantic's lax mode says they are),
    while 12.0 is still the integer 12, as JSON Schema has it."""

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        if field is not None and field.annotation in _NUMERIC and value is not None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError("must be a JSON number")
        return value


class Bounded(BaseModel):
    """A request body that refuses, before parsing, JSON holding more than MAX_JSON_VALUES values (a list's
    `max_length` is checked only after all its items were built and validated)."""

    @classmethod
    def model_validate_json(cls, json_data: str | bytes | bytearray, **kw: Any) -> Self:
        values = json_values(json_data, limit=MAX_JSON_VALUES)
        if values > MAX_JSON_VALUES:
            raise PayloadTooLarge(
                f"the request body holds more than {MAX_JSON_VALUES:,} JSON values (at most {MAX_MESSAGES:,} "
                f"messages or {MAX_INPUTS:,} inputs per request)",
                extra={"code": "too_many_values", "limit": MAX_JSON_VALUES},
            )
        return super().model_validate_json(json_data, **kw)


def _iso_date(value: Any) -> Any:
    if isinstance(value, str) and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError("must be a date as YYYY-MM-DD")
    return value


Day = Annotated[date, BeforeValidator(_iso_date)]
Text = Annotated[str, Field(min_length=1)]


class CacheOptions(Numbers, Schema):
    """Ask the gateway to serve a stored response (the cache plugin) and to store this one."""

    mode: Literal["exact", "semantic"] = "exact"
    ttl_seconds: int = Field(default=3600, ge=1, le=30 * 24 * 3600)
    threshold: float | None = Field(default=None, gt=0.0, le=1.0, description="semantic similarity needed")
    per_user: bool = Field(
        default=True,
        strict=True,
        description="With the request's `user` set, serve a cached answer only to the same `user`; false shares "
        "answers among all of this tenant's end users (a request without `user` is shared either way)",
    )


class OpenAIBody(BaseModel):
    """Base of the OpenAI request shapes: unknown fields are kept for the upstream."""

    model_config = ConfigDict(extra="allow")


# What the provider adapters read of the free-form OpenAI objects has a type here, so that a wrong one is the
# client's 422 (and the OpenAPI document says so) rather than a 500 in an adapter. Everything else in them passes to
# an OpenAI-compatible upstream as it came; every field here is optional unless an adapter cannot do without it.


class ImageURL(OpenAIBody):
    url: str


def _needs(kind: str, field: str, value: str = "string") -> dict[str, Any]:
    """JSON Schema for "a part of this `type` has this field, not null", which the part's validator enforces."""
    return {
        "if": {"properties": {"type": {"const": kind}}, "required": ["type"]},
        "then": {"properties": {field: {"type": value}}, "required": [field]},
    }


class ContentPart(OpenAIBody):
    """A part of a message's content: `text` for a text part, `image_url` for an image; other types pass through."""

    type: str
    text: str | None = None
    image_url: ImageURL | None = None
    model_config = ConfigDict(
        json_schema_extra={"allOf": [_needs("text", "text"), _needs("image_url", "image_url", "object")]}
    )

    @model_validator(mode="after")
    def _has_its_field(self) -> Self:
        # A text part without its text would reach a provider as "" (or be refused by it with a vaguer message).
        if self.type == "text" and self.text is None:
            raise ValueError("a content part of type 'text' needs a 'text' string")
        if self.type == "image_url" and self.image_url is None:
            raise ValueError("a content part of type 'image_url' needs an 'image_url' object with its 'url'")
        return self


class FunctionCall(OpenAIBody):
    name: str | None = None
    arguments: str | dict[str, Any] | None = Field(default=None, description="the arguments as a JSON string")


class ToolCall(OpenAIBody):
    id: str | None = None
    type: str | None = None
    function: FunctionCall | None = None


class ChatMessage(OpenAIBody):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None


class ToolParameters(OpenAIBody):
    """A JSON Schema object; the gateway reads `properties` (each a schema object) and `required`."""

    properties: dict[str, dict[str, Any]] | None = None
    required: list[str] | None = None


class FunctionTool(OpenAIBody):
    name: str
    description: str | None = None
    parameters: ToolParameters | None = None


class Tool(OpenAIBody):
    type: str | None = None
    function: FunctionTool | None = None


class ToolChoiceFunction(OpenAIBody):
    name: str | None = None


class ToolChoice(OpenAIBody):
    type: str | None = None
    function: ToolChoiceFunction | None = None


class StreamOptions(OpenAIBody):
    include_usage: bool = Field(default=False, strict=True)


class ChatCompletionIn(Numbers, Bounded, OpenAIBody):
    """`POST /v1/chat/completions` as the OpenAI API defines it, plus the optional `cache` extension."""

    model: str = Field(min_length=1, max_length=200)
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    stream: bool = Field(default=False, strict=True)
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_INT32)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=MAX_INT32)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    tools: list[Tool] | None = None
    tool_choice: str | ToolChoice | None = None
    stop: str | list[str] | None = None
    n: int | None = Field(
        default=None,
        ge=1,
        le=MAX_CHOICES,
        description="choices to generate: passed to an OpenAI-compatible provider, made as that many parallel calls "
        "to another; each choice is metered",
    )
    cache: CacheOptions | None = None


# ---- Anthropic's Messages API (`POST /v1/messages`) ------------------------------------------------------------


class MessageBlock(OpenAIBody):
    """A content block: `text`, `image`, `document`, `tool_use` or `tool_result` (other types are refused)."""

    type: str = Field(min_length=1, max_length=100)
    text: str | None = None
    source: dict[str, Any] | None = None
    id: str | None = None
    name: str | None = None
    input: dict[str, Any] | None = None
    tool_use_id: str | None = None
    content: str | list[dict[str, Any]] | None = None
    is_error: bool | None = Field(default=None, strict=True)
    model_config = ConfigDict(json_schema_extra={"allOf": [_needs("text", "text")]})

    @model_validator(mode="after")
    def _has_its_text(self) -> Self:
        if self.type == "text" and self.text is None:
            raise ValueError("a content block of type 'text' needs a 'text' string")
        return self


class MessageTurn(OpenAIBody):
    role: Literal["user", "assistant"]
    content: str | list[MessageBlock]


class MessageTool(OpenAIBody):
    name: str = Field(min_length=1, max_length=200)
    description: str | None = None
    input_schema: dict[str, Any] | None = None
    type: str | None = None
    strict: bool | None = Field(default=None, strict=True)


class MessageToolChoice(OpenAIBody):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = Field(default=None, strict=True)


class MessagesIn(Numbers, Bounded, OpenAIBody):
    """`POST /v1/messages` as Anthropic's Messages API defines it, for any chat model of the gateway."""

    model: str = Field(min_length=1, max_length=200)
    max_tokens: int = Field(ge=1, le=MAX_INT32)
    messages: list[MessageTurn] = Field(min_length=1, max_length=MAX_MESSAGES)
    system: str | list[MessageBlock] | None = None
    stream: bool = Field(default=False, strict=True)
    temperature: float | None = Field(default=None, ge=0.0, le=1.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    stop_sequences: list[str] | None = Field(default=None, max_length=64)
    tools: list[MessageTool] | None = None
    tool_choice: MessageToolChoice | None = None
    metadata: dict[str, Any] | None = None
    cache: CacheOptions | None = None


class MessageOut(BaseModel):
    """Documents an Anthropic `message` response body."""

    model_config = ConfigDict(extra="allow")
    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    model: str
    content: list[dict[str, Any]]
    stop_reason: str | None
    usage: dict[str, Any]


# ---- OpenAI's Responses API (`POST /v1/responses`, stateless) -------------------------------------------------


class ResponseInputPart(OpenAIBody):
    """`input_text`/`output_text` (text), `input_image` (image_url), `input_file` (file_data, filename)."""

    type: str = Field(min_length=1, max_length=100)
    text: str | None = None
    image_url: str | None = None
    file_data: str | None = None
    filename: str | None = None
    model_config = ConfigDict(
        json_schema_extra={"allOf": [_needs("input_text", "text"), _needs("output_text", "text")]}
    )

    @model_validator(mode="after")
    def _has_its_text(self) -> Self:
        if self.type in ("input_text", "output_text") and self.text is None:
            raise ValueError(f"a content part of type {self.type!r} needs a 'text' string")
        return self


class ResponseInputItem(OpenAIBody):
    """A `message` (role and content), a `function_call` (call_id, name, arguments) or a `function_call_output`
    (call_id, output)."""

    type: str | None = Field(default=None, max_length=100)
    role: Literal["user", "assistant", "system", "developer"] | None = None
    content: str | list[ResponseInputPart] | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | list[ResponseInputPart] | None = None


class ResponseTool(OpenAIBody):
    type: str = Field(min_length=1, max_length=100)
    name: str | None = Field(default=None, max_length=200)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = Field(default=None, strict=True)


class ResponsesIn(Numbers, Bounded, OpenAIBody):
    """`POST /v1/responses` as OpenAI's Responses API defines it, stateless: nothing is stored."""

    model: str = Field(min_length=1, max_length=200)
    input: str | Annotated[list[ResponseInputItem], Field(min_length=1, max_length=MAX_MESSAGES)]
    instructions: str | None = None
    tools: list[ResponseTool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = Field(default=None, strict=True)
    max_output_tokens: int | None = Field(default=None, ge=1, le=MAX_INT32)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    stream: bool = Field(default=False, strict=True)
    store: bool | None = Field(default=None, strict=True, description="only false: nothing is stored")
    text: dict[str, Any] | None = None
    reasoning: dict[str, Any] | None = None
    user: str | None = None
    cache: CacheOptions | None = None


class EmbeddingsIn(Numbers, Bounded, OpenAIBody):
    """`POST /v1/embeddings`. `model` may be omitted on the platform: the local model then answers."""

    model: str | None = Field(default=None, max_length=200)
    input: Text | Annotated[list[Text], Field(min_length=1, max_length=MAX_INPUTS)] = Field(
        description="a string or a list of strings (token arrays are not accepted); inputs x dimensions at most "
        f"{MAX_OUTPUT_VALUES:,}"
    )
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(
        default=None,
        ge=1,
        le=MAX_DIMENSIONS,
        description="output length (the local model shortens or zero-pads its 384)",
    )


class ModelCard(Schema):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str


class ModelList(Schema):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class OpenAIResponse(BaseModel):
    """Documents an OpenAI-shaped response body (chat completion, embeddings list)."""

    model_config = ConfigDict(extra="allow")
    object: str
    model: str


# ---- platform routes -------------------------------------------------------------------------------------


class Usage(Schema):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatIn(Numbers, Bounded, Schema):
    """`POST /api/v1/gateway/chat`: OpenAI messages in, one assistant message out."""

    model: str = Field(default="mock-1", min_length=1, max_length=200)
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES, description="OpenAI chat messages")
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_INT32)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    tools: list[Tool] | None = None
    tool_choice: str | ToolChoice | None = None
    stop: list[str] | None = None
    cache: CacheOptions | None = None


class ChatOut(Schema):
    id: str
    model: str
    message: dict[str, Any] = Field(description="the assistant message (content and/or tool_calls)")
    finish_reason: str | None
    usage: Usage
    cached: bool = False


class GenerateIn(Numbers, Bounded, Schema):
    """`POST /api/v1/gateway/generate`: one prompt in, text out."""

    prompt: str = Field(min_length=1)
    model: str = Field(default="mock-1", min_length=1, max_length=200)
    system: str | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_INT32)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    stop: list[str] | None = None
    cache: CacheOptions | None = None


class GenerateOut(Schema):
    text: str
    model: str
    finish_reason: str | None
    usage: Usage
    cached: bool = False


class PolicyIn(Numbers, Schema):
    """A tenant's whole gateway policy (`PUT` replaces it: a field left out is null); null means unlimited (or:
    every model)."""

    allowed_models: list[ModelName] | None = Field(
        default=None, max_length=MAX_ALLOWED_MODELS, description="public model names; null = all"
    )
    rpm: int | None = Field(default=None, ge=1, le=MAX_INT32, description="requests per minute")
    tpm: int | None = Field(default=None, ge=1, le=MAX_INT32, description="tokens per minute (reserved, then settled)")
    monthly_budget_usd: float | None = Field(default=None, ge=0.0, description="spending cap per calendar month")


class PolicyPatch(PolicyIn):
    """Changes to a tenant's gateway policy (`PATCH`): a field left out keeps its value, null makes it unlimited
    (or: every model), as in a JSON merge patch."""


class PolicyPublic(PolicyIn):
    tenant_id: str
    spent_usd_this_month: float = 0.0


class UsageQuery(Schema):
    since: Day | None = Field(default=None, description="first day (UTC), default 30 days ago")
    until: Day | None = Field(default=None, description="last day (UTC), inclusive; default today")
    limit: int = Field(default=50, ge=1, le=500)
    cursor: str | None = Field(default=None, pattern=CURSOR_PATTERN, description="`next_cursor` of the previous page")


class UsageRow(Schema):
    day: date
    model: str
    requests: int
    errors: int
    cache_hits: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    avg_latency_ms: float


class UsageList(Schema):
    data: list[UsageRow]
    next_cursor: str | None


class TenantPath(Schema):
    tenant_id: ResourceId
