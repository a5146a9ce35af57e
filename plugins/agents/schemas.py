"""Request and response types of the agents plugin: the single source for validation and the OpenAPI document.

Text the database stores refuses NUL (PostgreSQL text and jsonb hold none), and every number is bounded, so an odd
but schema-valid input is a 422 here rather than an error in the database.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from app.pagination import CURSOR_PATTERN, PageQuery
from app.schemas import ResourceId, Schema, json_integer

NO_NUL = r"^[^\x00]*$"
Name = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[^\x00]+$")]
LongText = Annotated[str, Field(max_length=100_000, pattern=NO_NUL)]
Message = Annotated[str, Field(min_length=1, max_length=100_000, pattern=r"^[^\x00]+$")]
Host = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^(\*\.)?[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")]
ToolName = Literal["rag_search", "render_prompt", "ml_predict", "http_request"]
RunStatus = Literal["queued", "running", "completed", "stopped", "failed", "cancelled"]
StopReason = Literal["max_steps", "max_tool_calls", "max_tokens", "max_seconds", "repeated_tool_call", "cancelled"]
MESSAGES_PAGE = 50


def _free_of_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" not in value
    if isinstance(value, dict):
        return all(_free_of_nul(k) and _free_of_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_free_of_nul(v) for v in value)
    return True


class PromptRef(Schema):
    """A prompt of the prompts plugin, rendered at run time as the system prompt."""

    name: Name
    label: Name | None = Field(default=None, description="default: the prompt's `latest` version")
    variables: dict[str, Any] = Field(default_factory=dict, max_length=100)

    @field_validator("variables")
    @classmethod
    def _no_nul(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not _free_of_nul(value):
            raise ValueError("variables must not contain NUL characters")
        return value


class AgentConfig(Schema):
    """Limits of each run (safe defaults, hard caps) and tool settings."""

    max_steps: Annotated[int, Field(ge=1, le=200), json_integer] = Field(
        default=20, description="model calls plus tool calls per run"
    )
    max_tool_calls: Annotated[int, Field(ge=0, le=100), json_integer] = Field(default=10, description="per run")
    max_tokens: Annotated[int, Field(ge=1, le=10_000_000), json_integer] = Field(
        default=50_000, description="prompt plus completion tokens of all model calls of a run"
    )
    max_seconds: Annotated[int, Field(ge=1, le=3600), json_integer] = Field(
        default=120, description="wall time of a run (per attempt, when a worker resumes it)"
    )
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    http_allowlist: list[Host] = Field(
        default_factory=list,
        max_length=100,
        description="hosts `http_request` may reach (`*.example.com` for subdomains); never private addresses",
    )
    prompt: PromptRef | None = Field(default=None, description="render this prompt as the system prompt instead")


class AgentCreate(Schema):
    name: Name
    description: LongText | None = None
    llm_model: Name = Field(description="a model the gateway serves to this tenant")
    system_prompt: LongText | None = None
    capabilities: list[ToolName] = Field(
        default_factory=list, max_length=4, description="built-in tools the agent may call (if their plugin is here)"
    )
    config: AgentConfig = Field(default_factory=AgentConfig)


class AgentUpdate(Schema):
    """Fields to change (the others keep their values); `config` is replaced whole."""

    name: Name | None = None
    description: LongText | None = None
    llm_model: Name | None = None
    system_prompt: LongText | None = None
    capabilities: list[ToolName] | None = Field(default=None, max_length=4)
    config: AgentConfig | None = None


class AgentPublic(Schema):
    agent_id: str
    name: str
    description: str | None
    llm_model: str | None
    llm_provider: str | None
    system_prompt: str | None
    capabilities: list[str]
    config: AgentConfig
    created_at: datetime | None
    updated_at: datetime | None


class AgentList(Schema):
    data: list[AgentPublic]
    next_cursor: str | None


class AgentListQuery(PageQuery):
    name: Name | None = Field(default=None, description="only agents with exactly this name")


class AgentPath(Schema):
    agent_id: ResourceId


class RunPath(Schema):
    agent_id: ResourceId
    run_id: ResourceId


class ThreadPath(Schema):
    agent_id: ResourceId
    thread_id: ResourceId


class ExecuteIn(Schema):
    """One task on a fresh thread."""

    task: Message
    stream: bool = Field(default=False, strict=True, description="answer with server-sent events")
    background: bool = Field(default=False, strict=True, description="answer 202 at once; poll or cancel the run")


class AgentChatIn(Schema):
    """A message on a thread (a new one when `thread_id` is left out), answered from its whole history."""

    message: Message
    thread_id: ResourceId | None = None
    stream: bool = Field(default=False, strict=True)
    background: bool = Field(default=False, strict=True)


class RunUsage(Schema):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class StepPublic(Schema):
    seq: int
    kind: Literal["model", "tool"]
    name: str = Field(description="the model called, or the tool")
    tool_call_id: str | None
    arguments: Any = Field(description="tool: the call's arguments; model: what it was given")
    result: Any = Field(description="tool: its JSON result; model: the assistant message")
    error: str | None
    usage: RunUsage
    started_at: datetime
    duration_ms: float


class RunPublic(Schema):
    run_id: str
    agent_id: str
    thread_id: str
    status: RunStatus
    output: str | None
    stop_reason: StopReason | None = Field(description="why a `stopped` or `cancelled` run ended")
    error: str | None
    background: bool
    job_id: str | None = Field(description="the `agents.run` job of a background run (`/api/v1/jobs/{id}`)")
    steps: list[StepPublic]
    usage: RunUsage
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class MessagePublic(Schema):
    seq: int
    role: Literal["user", "assistant"]
    content: str
    run_id: str | None
    created_at: datetime


class ThreadSummary(Schema):
    thread_id: str
    agent_id: str
    message_count: int
    created_at: datetime
    updated_at: datetime


class ThreadPublic(ThreadSummary):
    messages: list[MessagePublic]
    messages_next_cursor: str | None


class ThreadList(Schema):
    data: list[ThreadSummary]
    next_cursor: str | None


class MessagePageQuery(Schema):
    limit: int = Field(default=MESSAGES_PAGE, ge=1, le=200, description="Messages per page")
    cursor: str | None = Field(default=None, pattern=CURSOR_PATTERN, description="`messages_next_cursor`")


IDEMPOTENCY_KEY = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$")]

RUN_EVENT: dict[str, Any] = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"enum": ["run", "token", "tool_call", "tool_result", "done", "error"]},
        "data": {"type": "string", "contentMediaType": "application/json"},
    },
}
