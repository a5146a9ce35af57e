"""Agents: the documented `agents` table, and threads, messages, runs and run steps in their own tables.

Revision ID: 0010_agents
Revises: 0005_jobs

`agents` is exactly the table the platform documents (VARCHAR ids, nullable model fields, JSONB capabilities and
config, `idx_tenant_id`). Everything a conversation or a run in progress needs is a row, so any replica continues
what another started:
- `agents_threads`: a conversation of one agent; `agents_messages` its user and final assistant messages, in order.
- `agents_runs`: one answer to one message. At most one run of a thread is active (queued or running): a partial
  unique index enforces it, so two replicas racing for one thread cannot both start. `idempotency_key` is unique per
  agent, so a repeated request finds the run the first one made.
- `agents_run_steps`: every model call and tool call of a run, recorded when it finished, numbered from 0. The
  primary key (run_id, seq) is what makes a resumed run exact: a step is written once, and a run resumed by another
  worker rebuilds its state from these rows instead of repeating them.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010_agents"
down_revision: str | Sequence[str] | None = "0005_jobs"
branch_labels: str | Sequence[str] | None = ("agents",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE agents (
            agent_id        VARCHAR(255) PRIMARY KEY,
            tenant_id       VARCHAR(255) NOT NULL,
            name            VARCHAR(255) NOT NULL,
            description     TEXT,
            llm_model       VARCHAR(255),
            llm_provider    VARCHAR(255),
            system_prompt   TEXT,
            capabilities    JSONB,
            config          JSONB,
            created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
            updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX idx_tenant_id ON agents(tenant_id)")
    op.execute(
        """
        CREATE TABLE agents_threads (
            id              text PRIMARY KEY,
            tenant_id       text NOT NULL,
            agent_id        VARCHAR(255) NOT NULL REFERENCES agents(agent_id) ON DELETE CASCADE,
            message_count   int NOT NULL DEFAULT 0,
            created_at      timestamptz NOT NULL DEFAULT now(),
            updated_at      timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX ix_agents_threads_agent ON agents_threads (tenant_id, agent_id, id)")
    op.execute(
        """
        CREATE TABLE agents_messages (
            thread_id       text NOT NULL REFERENCES agents_threads(id) ON DELETE CASCADE,
            seq             int NOT NULL,
            tenant_id       text NOT NULL,
            run_id          text,
            role            text NOT NULL CHECK (role IN ('user', 'assistant')),
            content         text NOT NULL,
            created_at      timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_agents_messages PRIMARY KEY (thread_id, seq)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE agents_runs (
            id              text PRIMARY KEY,
            tenant_id       text NOT NULL,
            agent_id        VARCHAR(255) NOT NULL REFERENCES agents(agent_id) ON DELETE CASCADE,
            thread_id       text NOT NULL REFERENCES agents_threads(id) ON DELETE CASCADE,
            status          text NOT NULL DEFAULT 'queued'
                            CHECK (status IN ('queued', 'running', 'completed', 'stopped', 'failed', 'cancelled')),
            input           text NOT NULL,
            output          text,
            stop_reason     text,
            error           text,
            background      boolean NOT NULL DEFAULT false,
            job_id          text,
            idempotency_key text,
            cancel_requested boolean NOT NULL DEFAULT false,
            lease_until     timestamptz,
            prompt_tokens   bigint NOT NULL DEFAULT 0,
            completion_tokens bigint NOT NULL DEFAULT 0,
            created_at      timestamptz NOT NULL DEFAULT now(),
            started_at      timestamptz,
            finished_at     timestamptz,
            updated_at      timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        "CREATE UNIQUE INDEX uq_agents_runs_active ON agents_runs (thread_id) WHERE status IN ('queued', 'running')"
    )
    op.execute(
        "CREATE UNIQUE INDEX uq_agents_runs_idempotency ON agents_runs (tenant_id, agent_id, idempotency_key) "
        "WHERE idempotency_key IS NOT NULL"
    )
    op.execute("CREATE INDEX ix_agents_runs_thread ON agents_runs (thread_id, id)")
    op.execute(
        """
        CREATE TABLE agents_run_steps (
            run_id          text NOT NULL REFERENCES agents_runs(id) ON DELETE CASCADE,
            seq             int NOT NULL,
            tenant_id       text NOT NULL,
            kind            text NOT NULL CHECK (kind IN ('model', 'tool')),
            name            text NOT NULL,
            tool_call_id    text,
            arguments       jsonb,
            result          jsonb,
            error           text,
            prompt_tokens   int NOT NULL DEFAULT 0,
            completion_tokens int NOT NULL DEFAULT 0,
            started_at      timestamptz NOT NULL,
            duration_ms     double precision NOT NULL,
            CONSTRAINT pk_agents_run_steps PRIMARY KEY (run_id, seq)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE agents_run_steps")
    op.execute("DROP TABLE agents_runs")
    op.execute("DROP TABLE agents_messages")
    op.execute("DROP TABLE agents_threads")
    op.execute("DROP TABLE agents")
