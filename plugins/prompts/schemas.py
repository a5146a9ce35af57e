"""Request and response types of the prompts plugin: the single source for validation and the OpenAPI document.

A prompt's `template` is a string for `type: text` and a list of role/content messages for `type: chat`; the
service checks that it matches the prompt's type. `config` is the optional model configuration a caller
(the agents, the gateway) may apply when it sends the rendered prompt.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Discriminator, Field, RootModel, Tag, model_validator

from app.schemas import PositiveInt, Schema

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
LABEL_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
LATEST = "latest"
MAX_TEMPLATE_CHARS = 100_000


PromptName = Annotated[
    str, Field(pattern=NAME_PATTERN, description="1-128 of A-Z a-z 0-9 _ . -, starting with a letter or digit")
]
Label = Annotated[
    str, Field(pattern=LABEL_PATTERN, description="1-64 of a-z 0-9 _ . -; `latest` always means the newest version")
]
PromptType = Literal["text", "chat"]
Syntax = Literal["simple", "jinja2"]


class Message(Schema):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str = Field(max_length=MAX_TEMPLATE_CHARS)


# A text template is never empty: a prompt that renders to nothing is a mistake, refused when it is saved.
TextTemplate = Annotated[str, Field(min_length=1, max_length=MAX_TEMPLATE_CHARS)]
Template = TextTemplate | Annotated[list[Message], Field(min_length=1, max_length=100)]


class ModelConfig(Schema):
    model: str | None = Field(default=None, max_length=200)
    temperature: float | None = Field(default=None, strict=True, ge=0, le=2)
    top_p: float | None = Field(default=None, strict=True, ge=0, le=1)
    max_tokens: PositiveInt | None = None
    stop: list[str] | None = Field(default=None, max_length=4)
    params: dict[str, Any] = Field(default_factory=dict, description="Other request parameters, passed as they are")


class VersionCreate(Schema):
    template: Template
    config: ModelConfig | None = None
    commit_message: str = Field(default="", max_length=1000)
    labels: list[Label] = Field(default_factory=list, max_length=20, description="Labels to point at this version")


class _NewPrompt(Schema):
    name: PromptName
    syntax: Syntax = Field(
        default="simple",
        description="`simple`: logic-less {{name}} substitution. `jinja2`: sandboxed Jinja2 (loops, conditions)",
    )
    config: ModelConfig | None = None
    commit_message: str = Field(default="", max_length=1000)
    labels: list[Label] = Field(default_factory=list, max_length=20, description="Labels to point at version 1")


class TextPromptCreate(_NewPrompt):
    type: Literal["text"] = "text"
    template: TextTemplate


class ChatPromptCreate(_NewPrompt):
    type: Literal["chat"]
    template: Annotated[list[Message], Field(min_length=1, max_length=100)]


def _prompt_type(value: Any) -> str:
    return str(value.get("type", "text") if isinstance(value, dict) else getattr(value, "type", "text"))


class PromptCreate(RootModel[TextPromptCreate | ChatPromptCreate]):
    """A new prompt: `type` text (default) takes a string template, `type` chat a list of messages."""

    root: Annotated[
        Annotated[TextPromptCreate, Tag("text")] | Annotated[ChatPromptCreate, Tag("chat")],
        Discriminator(
            _prompt_type,
            custom_error_type="prompt_type",
            custom_error_message="type must be `text` (a string template) or `chat` (a list of messages)",
        ),
    ]


class VersionPublic(Schema):
    version: int
    template: Template
    variables: list[str] = Field(description="Variable names the template uses (derived from it)")
    config: ModelConfig | None
    commit_message: str
    created_at: datetime


class PromptSummary(Schema):
    name: str
    type: PromptType
    syntax: Syntax
    latest_version: int
    labels: dict[str, int] = Field(description="label -> version (`latest` included)")
    created_at: datetime
    updated_at: datetime


# Versions a prompt answer carries when the request names no `limit`; a version holds up to 100,000 characters.
VERSIONS_PAGE = 20
VERSIONS_MAX_PAGE = 100
# A version number as a cursor: below 10**9, so it always fits the integer column it is compared with.
VERSION_CURSOR_PATTERN = r"^[1-9][0-9]{0,8}$"


class VersionPageQuery(Schema):
    """`?limit=&cursor=` of `GET /{name}`: which page of its versions, newest first."""

    limit: int = Field(default=VERSIONS_PAGE, ge=1, le=VERSIONS_MAX_PAGE, description="Versions per page")
    cursor: str | None = Field(
        default=None, pattern=VERSION_CURSOR_PATTERN, description="`versions_next_cursor` of the previous page"
    )


class PromptPublic(PromptSummary):
    versions: list[VersionPublic] = Field(
        description=f"A page of versions, newest first ({VERSIONS_PAGE} unless `limit` says otherwise)"
    )
    versions_next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next (older) page; null on the last page"
    )


class PromptList(Schema):
    data: list[PromptSummary]
    next_cursor: str | None


class LabelMove(Schema):
    version: PositiveInt


class LabelPublic(Schema):
    name: str
    label: str
    version: int


class NamePath(Schema):
    name: PromptName


class LabelPath(Schema):
    name: PromptName
    label: Label


class RenderIn(Schema):
    # The "one or the other" rule in the document too: not (a label string and a version number) together.
    model_config = ConfigDict(
        json_schema_extra={
            "not": {
                "required": ["label", "version"],
                "properties": {"label": {"type": "string"}, "version": {"type": "integer"}},
            }
        }
    )

    label: Label | None = Field(default=None, description="Render the version this label points at")
    version: PositiveInt | None = Field(default=None, description="Render this version")
    variables: dict[str, Any] = Field(default_factory=dict)
    strict: bool = Field(
        default=True,
        strict=True,
        description="Refuse variables the template does not use (400). With false they are listed in "
        "`unknown_variables` instead",
    )

    @model_validator(mode="after")
    def _one_selector(self) -> RenderIn:
        if self.label is not None and self.version is not None:
            raise ValueError("give either label or version, not both (neither means label `latest`)")
        return self


class RenderOut(Schema):
    name: str
    version: int
    type: PromptType
    text: str | None = Field(description="The rendered text (type text)")
    messages: list[Message] | None = Field(description="The rendered messages (type chat)")
    config: ModelConfig | None
    unknown_variables: list[str] = Field(description="Variables given that the template does not use")
