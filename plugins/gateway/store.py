"""SQL for the gateway's tables: tenant policy and counters (`gateway_tenant_limits`), the ledger (`gateway_usage`).

`admit` is the hot path: one UPSERT that checks the model against the tenant's allow-list and the RPM, TPM
and budget counters, and counts the request only if all pass, so two replicas can never both take the last
slot. Minute windows and months come from the database clock, the same for every replica.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import asyncpg

from app.db import Database
from app.errors import NotFound
from plugins.gateway.schemas import PolicyIn

# Every replica LISTENs here; a policy write notifies it with the tenant id in the same transaction (see limits).
POLICY_CHANNEL = "faas_gateway_policy"
# Policy fields, which are also their columns' names: the only names a PATCH writes into SQL.
_POLICY_COLUMNS = tuple(PolicyIn.model_fields)

# The counters are a limit, not a record (the ledger is the record): this statement's own transaction commits
# without waiting for the WAL flush (`set_config(..., true)` is SET LOCAL). Atomicity and the row lock are as
# before; a PostgreSQL crash may forget the last fraction of a second of counts. It saves ~0.25 ms a request.
_ADMIT = """
WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true))
INSERT INTO gateway_tenant_limits AS g
    (tenant_id, window_start, window_requests, window_tokens, budget_period, period_spent_usd)
SELECT $1, date_trunc('minute', now()), 1, CAST($3 AS bigint),
        CAST(date_trunc('month', now()) AS date), CAST($4 AS float8) FROM relaxed
ON CONFLICT (tenant_id) DO UPDATE SET
    window_requests = CASE WHEN g.window_start = EXCLUDED.window_start THEN g.window_requests + 1 ELSE 1 END,
    window_tokens = CASE WHEN g.window_start = EXCLUDED.window_start
        THEN g.window_tokens + EXCLUDED.window_tokens ELSE EXCLUDED.window_tokens END,
    window_start = EXCLUDED.window_start,
    period_spent_usd = CASE WHEN g.budget_period = EXCLUDED.budget_period
        THEN g.period_spent_usd + EXCLUDED.period_spent_usd ELSE EXCLUDED.period_spent_usd END,
    budget_period = EXCLUDED.budget_period
WHERE (g.allowed_models IS NULL OR CAST($2 AS text) = ANY(g.allowed_models))
  AND (g.rpm IS NULL OR g.window_start <> EXCLUDED.window_start OR g.window_requests + 1 <= g.rpm)
  AND (g.tpm IS NULL OR (CASE WHEN g.window_start = EXCLUDED.window_start THEN g.window_tokens ELSE 0 END)
        + EXCLUDED.window_tokens <= g.tpm)
  AND (g.monthly_budget_usd IS NULL OR (CASE WHEN g.budget_period = EXCLUDED.budget_period
        THEN g.period_spent_usd ELSE 0 END) + EXCLUDED.period_spent_usd <= g.monthly_budget_usd)
RETURNING window_start, budget_period
"""

_SETTLE = """
UPDATE gateway_tenant_limits AS g SET
    window_tokens = CASE WHEN g.window_start = s.w THEN GREATEST(0, g.window_tokens + s.dtok)
        ELSE g.window_tokens END,
    period_spent_usd = CASE WHEN g.budget_period = s.p THEN GREATEST(0, g.period_spent_usd + s.dcost)
        ELSE g.period_spent_usd END
FROM unnest(CAST(:t AS text[]), CAST(:w AS timestamptz[]), CAST(:p AS date[]), CAST(:dtok AS bigint[]),
            CAST(:dcost AS float8[])) AS s(t, w, p, dtok, dcost)
WHERE g.tenant_id = s.t
"""

# Each ledger write adds its rows to the daily rollup in the same statement, so a report read from the rollup
# always equals the ledger. Groups are added in key order: concurrent writers lock rollup rows in the same order.
_ROLLUP = """
rolled AS (
    INSERT INTO gateway_usage_daily AS d (tenant_id, day, model, requests, errors, cache_hits, prompt_tokens,
        completion_tokens, cost_usd, latency_ms_sum)
    SELECT tenant_id, CAST(created_at AT TIME ZONE 'UTC' AS date), model, count(*),
        count(*) FILTER (WHERE status >= 400), count(*) FILTER (WHERE cache_hit), sum(prompt_tokens),
        sum(completion_tokens), sum(cost_usd), sum(latency_ms)
    FROM inserted GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (tenant_id, day, model) DO UPDATE SET
        requests = d.requests + EXCLUDED.requests, errors = d.errors + EXCLUDED.errors,
        cache_hits = d.cache_hits + EXCLUDED.cache_hits, prompt_tokens = d.prompt_tokens + EXCLUDED.prompt_tokens,
        completion_tokens = d.completion_tokens + EXCLUDED.completion_tokens, cost_usd = d.cost_usd + EXCLUDED.cost_usd,
        latency_ms_sum = d.latency_ms_sum + EXCLUDED.latency_ms_sum
    RETURNING 1
)"""
_RETURNING = (
    "RETURNING tenant_id, created_at, model, status, cache_hit, prompt_tokens, completion_tokens, cost_usd, latency_ms"
)

# The ledger's group commit: one statement (so one transaction and one round trip) inserts a batch of usage rows,
# adds them to the daily rollup and settles their reservations. A reply waits for it, so it keeps the default
# synchronous commit.
_WRITE_USAGE = f"""
WITH settled AS (
    UPDATE gateway_tenant_limits AS g SET
        window_tokens = CASE WHEN g.window_start = s.w THEN GREATEST(0, g.window_tokens + s.dtok)
            ELSE g.window_tokens END,
        period_spent_usd = CASE WHEN g.budget_period = s.p THEN GREATEST(0, g.period_spent_usd + s.dcost)
            ELSE g.period_spent_usd END
    FROM unnest($15::text[], $16::timestamptz[], $17::date[], $18::bigint[], $19::float8[]) AS s(t, w, p, dtok, dcost)
    WHERE g.tenant_id = s.t
    RETURNING 1
), inserted AS (
    INSERT INTO gateway_usage (tenant_id, created_at, request_id, model, deployment, provider, prompt_tokens,
        completion_tokens, cost_usd, latency_ms, cache_hit, stream, status, error)
    SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int[],
        $8::int[], $9::float8[], $10::float8[], $11::bool[], $12::bool[], $13::int[], $14::text[])
    {_RETURNING}
), {_ROLLUP.strip()}
SELECT (SELECT count(*) FROM inserted) AS inserted, (SELECT count(*) FROM settled) AS settled,
    (SELECT count(*) FROM rolled) AS rolled
"""

_INSERT_USAGE = f"""
WITH inserted AS (
    INSERT INTO gateway_usage (tenant_id, created_at, request_id, model, deployment, provider, prompt_tokens,
        completion_tokens, cost_usd, latency_ms, cache_hit, stream, status, error)
    SELECT * FROM unnest(CAST(:tenant_id AS text[]), CAST(:created_at AS timestamptz[]), CAST(:request_id AS text[]),
        CAST(:model AS text[]), CAST(:deployment AS text[]), CAST(:provider AS text[]), CAST(:prompt AS int[]),
        CAST(:completion AS int[]), CAST(:cost AS float8[]), CAST(:latency AS float8[]), CAST(:cache_hit AS bool[]),
        CAST(:stream AS bool[]), CAST(:status AS int[]), CAST(:error AS text[]))
    {_RETURNING}
), {_ROLLUP.strip()}
SELECT (SELECT count(*) FROM inserted) AS inserted, (SELECT count(*) FROM rolled) AS rolled
"""

# Groups are paged by a text key, "<day>~<hex of the model's UTF-8>": it sorts like (day, model), fits the cursor
# alphabet whatever the model is called, and any string is a valid position to continue after.
_USAGE_KEY = "to_char(day, 'YYYY-MM-DD') || '~' || left(encode(convert_to(model, 'UTF8'), 'hex'), 180)"
_USAGE = f"""
SELECT day, model, requests, errors, cache_hits, prompt_tokens, completion_tokens, cost_usd,
    CASE WHEN requests > 0 THEN latency_ms_sum / requests ELSE 0 END AS avg_latency_ms
FROM gateway_usage_daily
WHERE tenant_id = :t AND day >= CAST(:since AS date) AND day <= CAST(:until AS date)
  AND (CAST(:after AS text) IS NULL OR ({_USAGE_KEY}) COLLATE "C" > CAST(:after AS text) COLLATE "C")
ORDER BY ({_USAGE_KEY}) COLLATE "C"
LIMIT :limit
"""

# Retention: the oldest ledger rows, a batch at a time (the BRIN index on created_at finds them; the daily rollup
# keeps their sums). SKIP LOCKED lets every replica run it without waiting for another.
_EXPIRE_USAGE = """
DELETE FROM gateway_usage WHERE id IN (
    SELECT id FROM gateway_usage WHERE created_at < now() - make_interval(days => $1)
    LIMIT $2 FOR UPDATE SKIP LOCKED
)
"""


def rejects_row(exc: BaseException) -> bool:
    """Whether `exc` is PostgreSQL (or asyncpg, while encoding) refusing a value, not the database failing."""
    return isinstance(
        exc, (asyncpg.exceptions.DataError, asyncpg.exceptions.IntegrityConstraintViolationError, UnicodeError)
    )


@dataclass(frozen=True)
class Settlement:
    """A correction to a reservation once the real usage is known (negative gives back)."""

    tenant_id: str
    window: datetime
    period: date
    tokens: int
    cost: float


def net_settlements(items: Sequence[Settlement]) -> list[Settlement]:
    """One correction per tenant, for its latest window and month, in tenant order (a stable lock order).

    Corrections to an older minute or month no longer matter: that counter has rolled over.
    """
    latest: dict[str, tuple[datetime, date, int, float]] = {}
    for s in items:
        cur = latest.get(s.tenant_id)
        if cur is None or s.window > cur[0]:
            carry = cur[3] if cur is not None and cur[1] == s.period else 0.0
            latest[s.tenant_id] = (s.window, s.period, s.tokens, s.cost + carry)
        elif s.window == cur[0]:
            latest[s.tenant_id] = (cur[0], cur[1], cur[2] + s.tokens, cur[3] + s.cost)
        elif s.period == cur[1]:
            latest[s.tenant_id] = (cur[0], cur[1], cur[2], cur[3] + s.cost)
    return [Settlement(t, *latest[t]) for t in sorted(latest)]


@dataclass(frozen=True)
class UsageEntry:
    tenant_id: str
    created_at: datetime
    request_id: str | None
    model: str
    deployment: str | None
    provider: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_ms: float
    cache_hit: bool
    stream: bool
    status: int
    error: str | None


class GatewayStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def admit(self, *, tenant_id: str, model: str, tokens: int, cost: float) -> tuple[datetime, date] | None:
        row = await self.db.fetchrow_raw(_ADMIT, tenant_id, model, tokens, float(cost))
        return None if row is None else (row["window_start"], row["budget_period"])

    async def require_tenant(self, *, tenant_id: str) -> None:
        if await self.db.fetch_val("SELECT 1 FROM tenants WHERE id = :t", {"t": tenant_id}) is None:
            raise NotFound(f"tenant {tenant_id!r} does not exist")

    async def get_limits(self, *, tenant_id: str) -> dict[str, Any]:
        row = await self.db.fetch_one(
            "SELECT allowed_models, rpm, tpm, monthly_budget_usd, window_start, window_requests, window_tokens, "
            "budget_period, period_spent_usd, now() AS now, date_trunc('minute', now()) AS this_minute, "
            "CAST(date_trunc('month', now()) AS date) AS this_month FROM gateway_tenant_limits WHERE tenant_id = :t",
            {"t": tenant_id},
        )
        if row is None:
            return {"allowed_models": None, "rpm": None, "tpm": None, "monthly_budget_usd": None}
        return dict(row._mapping)

    async def update_policy(self, *, tenant_id: str, policy: PolicyIn) -> dict[str, Any]:
        """Replace the whole policy (every field, null = unlimited)."""
        return await self.patch_policy(tenant_id=tenant_id, fields=policy.model_dump())

    async def patch_policy(self, *, tenant_id: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Set only `fields` (policy field name -> value) in one statement; a tenant without a policy row gets one,
        its other fields null (unlimited). Every replica hears of the change (NOTIFY, delivered at commit).

        A tenant that counted nothing was admitted without touching its counters, so its month's spending is taken
        from the ledger whenever the row's month is not the current one (or the row is new)."""
        columns = [c for c in _POLICY_COLUMNS if c in fields]
        if columns:
            await self.db.execute(
                "WITH month AS (SELECT CAST(date_trunc('month', now()) AS date) AS p), changed AS ("
                f"INSERT INTO gateway_tenant_limits AS g (tenant_id, budget_period, period_spent_usd, "
                f"{', '.join(columns)}) "
                "SELECT :t, month.p, (SELECT COALESCE(sum(u.cost_usd), 0) FROM gateway_usage u "
                f"WHERE u.tenant_id = :t AND u.created_at >= month.p), {', '.join(':' + c for c in columns)} "
                "FROM month ON CONFLICT (tenant_id) DO UPDATE SET "
                + ", ".join(f"{c} = EXCLUDED.{c}" for c in columns)
                + ", period_spent_usd = CASE WHEN g.budget_period = EXCLUDED.budget_period "
                "THEN g.period_spent_usd ELSE EXCLUDED.period_spent_usd END, budget_period = EXCLUDED.budget_period "
                f"RETURNING g.tenant_id) SELECT pg_notify('{POLICY_CHANNEL}', tenant_id) FROM changed",
                {"t": tenant_id, **{c: fields[c] for c in columns}},
            )
        return await self.get_limits(tenant_id=tenant_id)

    async def settle(self, items: Sequence[Settlement]) -> None:
        net = net_settlements(items)
        if not net:
            return
        await self.db.execute(
            _SETTLE,
            {
                "t": [n.tenant_id for n in net],
                "w": [n.window for n in net],
                "p": [n.period for n in net],
                "dtok": [n.tokens for n in net],
                "dcost": [n.cost for n in net],
            },
        )

    async def write_usage(self, entries: Sequence[UsageEntry], settlements: Sequence[Settlement]) -> None:
        """Insert `entries` and apply `settlements` atomically (one statement, one transaction)."""
        net = net_settlements(settlements)
        await self.db.fetchrow_raw(
            _WRITE_USAGE,
            [e.tenant_id for e in entries],
            [e.created_at for e in entries],
            [e.request_id for e in entries],
            [e.model for e in entries],
            [e.deployment for e in entries],
            [e.provider for e in entries],
            [e.prompt_tokens for e in entries],
            [e.completion_tokens for e in entries],
            [e.cost_usd for e in entries],
            [e.latency_ms for e in entries],
            [e.cache_hit for e in entries],
            [e.stream for e in entries],
            [e.status for e in entries],
            [e.error for e in entries],
            [n.tenant_id for n in net],
            [n.window for n in net],
            [n.period for n in net],
            [n.tokens for n in net],
            [n.cost for n in net],
        )

    async def insert_usage(self, entries: Sequence[UsageEntry]) -> None:
        if not entries:
            return
        await self.db.execute(
            _INSERT_USAGE,
            {
                "tenant_id": [e.tenant_id for e in entries],
                "created_at": [e.created_at for e in entries],
                "request_id": [e.request_id for e in entries],
                "model": [e.model for e in entries],
                "deployment": [e.deployment for e in entries],
                "provider": [e.provider for e in entries],
                "prompt": [e.prompt_tokens for e in entries],
                "completion": [e.completion_tokens for e in entries],
                "cost": [e.cost_usd for e in entries],
                "latency": [e.latency_ms for e in entries],
                "cache_hit": [e.cache_hit for e in entries],
                "stream": [e.stream for e in entries],
                "status": [e.status for e in entries],
                "error": [e.error for e in entries],
            },
        )

    async def expire_usage(self, *, days: int, batch: int = 10_000) -> int:
        """Delete up to `batch` ledger rows older than `days` days; how many went."""
        async with self.db.connection() as conn:
            status: str = await conn.raw_connection.execute(_EXPIRE_USAGE, days, batch)
        return int(status.rsplit(" ", 1)[-1])

    async def list_usage(
        self, *, tenant_id: str, since: date, until: date, after: str | None, limit: int
    ) -> list[dict[str, Any]]:
        rows = await self.db.fetch_all(
            _USAGE,
            {
                "t": tenant_id,
                "since": since,
                "until": until,
                "after": after,
                "limit": limit,
            },
        )
        return [dict(r._mapping) for r in rows]
