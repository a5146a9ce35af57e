"""The agents' SQL on real PostgreSQL: `AgentStorage` (save, load, list, delete; tenant-scoped, typed rows) and the
run rules `AgentsStore` keeps (one active run per thread; a sync run whose replica died frees its thread; a step is
recorded once)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from app.db import Database
from app.errors import Conflict, NotFound
from app.tenancy import TenantStore
from plugins.agents.store import AgentRow, AgentsStore, AgentStorage, StepRow


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    await database.connect()
    yield database
    await database.disconnect()


def _agent(agent_id: str, tenant_id: str, name: str = "a") -> AgentRow:
    return AgentRow(
        agent_id=agent_id,
        tenant_id=tenant_id,
        name=name,
        description=None,
        llm_model="mock-1",
        llm_provider="mock",
        system_prompt="hi",
        capabilities=["http_request"],
        config={"max_steps": 3},
    )


async def test_agent_storage_is_tenant_scoped(db: Database) -> None:
    storage = AgentStorage(db)
    saved = await storage.save(_agent("agt_1", "ten_a"))
    assert saved.capabilities == ["http_request"] and saved.config == {"max_steps": 3} and saved.created_at
    assert await storage.load(tenant_id="ten_a", agent_id="agt_1") == saved
    assert await storage.load(tenant_id="ten_b", agent_id="agt_1") is None
    with pytest.raises(NotFound):  # the id is another tenant's: never taken over
        await storage.save(_agent("agt_1", "ten_b", name="mine"))
    changed = await storage.save(_agent("agt_1", "ten_a", name="renamed"))
    assert changed.name == "renamed" and changed.created_at == saved.created_at
    assert changed.updated_at is not None and saved.updated_at is not None and changed.updated_at > saved.updated_at
    await storage.save(_agent("agt_2", "ten_a", name="renamed"))
    await storage.save(_agent("agt_3", "ten_a", name="other"))
    page = await storage.list(tenant_id="ten_a", limit=2)
    assert [a.agent_id for a in page.items] == ["agt_1", "agt_2"] and page.next_cursor == "agt_2"
    rest = await storage.list(tenant_id="ten_a", limit=2, cursor=page.next_cursor)
    assert [a.agent_id for a in rest.items] == ["agt_3"] and rest.next_cursor is None
    named = await storage.list(tenant_id="ten_a", limit=10, name="renamed")
    assert [a.agent_id for a in named.items] == ["agt_1", "agt_2"]
    assert (await storage.list(tenant_id="ten_b", limit=10)).items == []
    assert not await storage.delete(tenant_id="ten_b", agent_id="agt_1")
    assert await storage.delete(tenant_id="ten_a", agent_id="agt_1")
    assert await storage.load(tenant_id="ten_a", agent_id="agt_1") is None


async def test_one_active_run_per_thread_and_a_dead_sync_run_frees_its_thread(db: Database) -> None:
    tenant = (await TenantStore(db).insert_tenant(name="t"))[0].id
    await AgentStorage(db).save(_agent("agt_x", tenant))
    store = AgentsStore(db)
    args: dict[str, Any] = {"tenant_id": tenant, "agent_id": "agt_x", "background": False, "idempotency_key": None}
    async with db.transaction():
        first = await store.start_run(thread_id=None, text="one", lease_seconds=60, **args)
    with pytest.raises(Conflict):
        async with db.transaction():
            await store.start_run(thread_id=first.thread_id, text="two", lease_seconds=60, **args)
    claimed = await store.claim_run(run_id=first.id, lease_seconds=0)  # its replica dies: the lease runs out
    assert claimed is not None and claimed.status == "running"
    async with db.transaction():
        second = await store.start_run(thread_id=first.thread_id, text="two", lease_seconds=60, **args)
    dead = await store.get_run(tenant_id=tenant, run_id=first.id)
    assert dead is not None and dead.status == "failed" and "stopped" in (dead.error or "")
    assert [m.content for m in await store.history(run=second)] == ["one", "two"]
    # A run created but never started (a stream nobody read) frees its thread the same way once its lease is past.
    async with db.transaction():
        unread = await store.start_run(thread_id=None, text="lost", lease_seconds=0, **args)
    assert not await store.delete_thread(tenant_id="ten_other", agent_id="agt_x", thread_id=unread.thread_id)
    assert await store.delete_thread(tenant_id=tenant, agent_id="agt_x", thread_id=unread.thread_id)
    await store.claim_run(run_id=second.id, lease_seconds=60)
    step = StepRow(
        seq=0,
        kind="tool",
        name="http_request",
        tool_call_id="c1",
        arguments={"url": "x"},
        result={"error": "no"},
        error="no",
        prompt_tokens=0,
        completion_tokens=0,
        started_at=datetime.now(UTC),
        duration_ms=1.0,
    )
    assert await store.insert_step(run_id=second.id, tenant_id=tenant, step=step, lease_seconds=60) == (True, False)
    assert await store.insert_step(run_id=second.id, tenant_id=tenant, step=step, lease_seconds=60) == (False, False)
    assert [s.seq for s in await store.list_steps(run_id=second.id)] == [0]
    settled = await store.finish_run(run_id=second.id, status="completed", output="answer")
    assert settled is not None and settled.status == "completed"
    assert await store.finish_run(run_id=second.id, status="failed") is None
    assert [
        m.content
        for m in (await store.list_messages(tenant_id=tenant, thread_id=first.thread_id, limit=9, cursor=None)).items
    ] == ["one", "two", "answer"]
