"""What a tenant reads back about itself: the usage ledger aggregated by UTC day and model (paged), and its
policy with this month's spend."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from app.pagination import decode_cursor, encode_cursor
from plugins.gateway.schemas import PolicyPublic, UsageList, UsageQuery, UsageRow
from plugins.gateway.store import GatewayStore


async def usage_page(store: GatewayStore, *, tenant_id: str, query: UsageQuery) -> UsageList:
    until = query.until or datetime.now(UTC).date()
    # Any date is a valid bound (the OpenAPI document says so); 30 days before one in year 1 is no date at all.
    since = query.since or max(until, date.min + timedelta(days=30)) - timedelta(days=30)
    if since > until:
        return UsageList(data=[], next_cursor=None)  # an empty range, like any range without usage
    after = decode_cursor(query.cursor)
    rows = await store.list_usage(tenant_id=tenant_id, since=since, until=until, after=after, limit=query.limit + 1)
    items = [UsageRow(**r) for r in rows[: query.limit]]
    more = len(rows) > query.limit
    return UsageList(data=items, next_cursor=_cursor(items[-1]) if more else None)


def _cursor(row: UsageRow) -> str:
    # The store's paging key: "<day>~<hex of the model name>" (any model name fits the cursor alphabet).
    return encode_cursor(f"{row.day.isoformat()}~{row.model.encode()[:90].hex()}")


def policy_public(tenant_id: str, row: dict[str, Any]) -> PolicyPublic:
    this_month = row.get("budget_period") is not None and row.get("budget_period") == row.get("this_month")
    return PolicyPublic(
        tenant_id=tenant_id,
        allowed_models=row.get("allowed_models"),
        rpm=row.get("rpm"),
        tpm=row.get("tpm"),
        monthly_budget_usd=row.get("monthly_budget_usd"),
        spent_usd_this_month=float(row.get("period_spent_usd") or 0.0) if this_month else 0.0,
    )
