"""Gateway: a daily rollup of the usage ledger, and a BRIN index for dropping old ledger rows.

`gateway_usage_daily` holds one row per tenant, UTC day and model with the sums a usage report shows. The ledger's
group commit adds to it in the statement that inserts the ledger rows, so the two never disagree and a report
reads O(days x models) rows instead of aggregating the raw ledger. Existing ledger rows are rolled up here.
The BRIN index on `gateway_usage.created_at` (a few pages for millions of append-ordered rows) lets retention
find the oldest rows without a B-tree on the hot insert path.

Revision ID: 0008_gateway_daily
Revises: 0004_gateway
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008_gateway_daily"
down_revision: str | Sequence[str] | None = "0004_gateway"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE gateway_usage_daily (
            tenant_id           text NOT NULL,
            day                 date NOT NULL,
            model               text NOT NULL,
            requests            bigint NOT NULL DEFAULT 0,
            errors              bigint NOT NULL DEFAULT 0,
            cache_hits          bigint NOT NULL DEFAULT 0,
            prompt_tokens       bigint NOT NULL DEFAULT 0,
            completion_tokens   bigint NOT NULL DEFAULT 0,
            cost_usd            double precision NOT NULL DEFAULT 0,
            latency_ms_sum      double precision NOT NULL DEFAULT 0,
            PRIMARY KEY (tenant_id, day, model)
        )
        """
    )
    op.execute(
        """
        INSERT INTO gateway_usage_daily
        SELECT tenant_id, CAST(created_at AT TIME ZONE 'UTC' AS date), model, count(*),
            count(*) FILTER (WHERE status >= 400), count(*) FILTER (WHERE cache_hit), sum(prompt_tokens),
            sum(completion_tokens), sum(cost_usd), sum(latency_ms)
        FROM gateway_usage GROUP BY 1, 2, 3
        """
    )
    op.execute("CREATE INDEX ix_gateway_usage_created_brin ON gateway_usage USING brin (created_at)")


def downgrade() -> None:
    op.execute("DROP INDEX ix_gateway_usage_created_brin")
    op.execute("DROP TABLE gateway_usage_daily")
