"""Gateway: per-tenant policy with its live counters, and the usage ledger.

`gateway_tenant_limits` holds a tenant's policy (allowed models, RPM, TPM, monthly budget) and, in the same
row, the counters that enforce it (current minute's requests and tokens, current month's spending), so one
UPSERT checks and counts a request atomically across replicas. `gateway_usage` is the per-request ledger.

Revision ID: 0004_gateway
Revises: 0001_foundation
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004_gateway"
down_revision: str | Sequence[str] | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = ("gateway",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE gateway_tenant_limits (
            tenant_id           text PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
            allowed_models      text[],
            rpm                 integer CHECK (rpm IS NULL OR rpm > 0),
            tpm                 bigint CHECK (tpm IS NULL OR tpm > 0),
            monthly_budget_usd  double precision CHECK (monthly_budget_usd IS NULL OR monthly_budget_usd >= 0),
            window_start        timestamptz NOT NULL DEFAULT date_trunc('minute', now()),
            window_requests     integer NOT NULL DEFAULT 0,
            window_tokens       bigint NOT NULL DEFAULT 0,
            budget_period       date NOT NULL DEFAULT CAST(date_trunc('month', now()) AS date),
            period_spent_usd    double precision NOT NULL DEFAULT 0
        )
        """
    )
    op.execute(
        """
        CREATE TABLE gateway_usage (
            id                  bigserial PRIMARY KEY,
            tenant_id           text NOT NULL,
            created_at          timestamptz NOT NULL,
            request_id          text,
            model               text NOT NULL,
            deployment          text,
            provider            text,
            prompt_tokens       integer NOT NULL DEFAULT 0,
            completion_tokens   integer NOT NULL DEFAULT 0,
            cost_usd            double precision NOT NULL DEFAULT 0,
            latency_ms          double precision NOT NULL DEFAULT 0,
            cache_hit           boolean NOT NULL DEFAULT false,
            stream              boolean NOT NULL DEFAULT false,
            status              integer NOT NULL,
            error               text
        )
        """
    )
    op.execute("CREATE INDEX ix_gateway_usage_tenant_created ON gateway_usage (tenant_id, created_at)")


def downgrade() -> None:
    op.execute("DROP TABLE gateway_usage")
    op.execute("DROP TABLE gateway_tenant_limits")
