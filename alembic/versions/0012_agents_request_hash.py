"""Agents: a run remembers what request its Idempotency-Key was first used for.

Revision ID: 0012_agents_request_hash
Revises: 0010_agents

`request_hash` is a SHA-256 of what the run was asked (the route, the text, the thread, foreground or background).
A repeated request with the same key and the same hash gets the first run back; the same key with a different
request is refused (422) instead of answering with a run for a question it did not ask. Runs made before this
column existed have NULL, which matches any repeat (their behaviour so far).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0012_agents_request_hash"
down_revision: str | Sequence[str] | None = "0010_agents"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE agents_runs ADD COLUMN request_hash text")


def downgrade() -> None:
    op.execute("ALTER TABLE agents_runs DROP COLUMN request_hash")
