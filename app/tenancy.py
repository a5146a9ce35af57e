"""Tenants and API keys: creation, listing, revocation, and resolving a presented key to its tenant.

Keys are 256-bit random tokens shown once; only their SHA-256 is stored (a slow hash buys nothing against
a random 256-bit secret and would cost every request). Lookups use the hash; the short prefix is for humans.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from cachetools import TTLCache

from app.db import Database
from app.errors import Conflict, NotFound
from app.pagination import Page, decode_cursor, encode_cursor

KEY_PREFIX = "faas_"
KNOWN_TENANTS_SIZE = 100_000
KNOWN_TENANTS_SECONDS = 600.0


def new_id(kind: str) -> str:
    return f"{kind}_{secrets.token_hex(8)}"


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    created_at: datetime


@dataclass(frozen=True)
class ApiKey:
    id: str
    tenant_id: str
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class KeyLookup:
    """What a presented key resolves to."""

    tenant_id: str
    key_id: str
    revoked: bool


def _tenant(row: Any) -> Tenant:
    return Tenant(id=row["id"], name=row["name"], created_at=row["created_at"])


def _key(row: Any) -> ApiKey:
    return ApiKey(
        id=row["id"],
        tenant_id=row["tenant_id"],
        name=row["name"],
        prefix=row["prefix"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


class TenantStore:
    """Tenants and keys. `lookup_key` answers from a short per-replica cache (`key_cache_seconds`, 0 = off).

    The cache holds only positive answers, each for a few seconds, and a revocation through this store drops its
    entry at once; another replica keeps honouring a revoked key for at most `key_cache_seconds`.
    """

    def __init__(self, db: Database, *, key_cache_seconds: float = 0.0, key_cache_size: int = 10_000) -> None:
        self.db = db
        self.key_cache_seconds = key_cache_seconds
        self.key_cache_size = key_cache_size
        # Least recently used keys leave one at a time when it is full (never all at once: with more active keys
        # than it holds, clearing it would send every request to the database together).
        self._keys: TTLCache[bytes, KeyLookup] | None = (
            TTLCache(maxsize=key_cache_size, ttl=key_cache_seconds) if key_cache_seconds > 0 else None
        )
        # Tenants known to have their row here: a row is never deleted, so this only saves a round trip.
        self._known: TTLCache[str, bool] = TTLCache(KNOWN_TENANTS_SIZE, KNOWN_TENANTS_SECONDS)

    async def learn_tenant(self, tenant_id: str) -> None:
        """Make sure the tenant a verified signed call vouches for has its row in this database.

        A deployment that serves plugins for a front on another database never saw the tenant created (that
        happened on the front, with its key); its own tables still reference `tenants`. The row it adds is named
        after the id and marked as learned, and has no keys: only signed calls act for it here.
        """
        if tenant_id in self._known or not 0 < len(tenant_id) <= 200:
            return
        await self.db.execute(
            "INSERT INTO tenants (id, name, settings) VALUES (:id, :id, CAST(:settings AS jsonb)) "
            "ON CONFLICT DO NOTHING",
            {"id": tenant_id, "settings": '{"learned_from": "signed call"}'},
        )
        self._known[tenant_id] = True

    async def insert_tenant(self, *, name: str) -> tuple[Tenant, ApiKey, str]:
        """Create a tenant and its first key; returns the key in clear, the only time it exists."""
        tenant_id = new_id("ten")
        async with self.db.transaction():
            try:
                row = await self.db.fetch_one(
                    "INSERT INTO tenants (id, name) VALUES (:id, :name) RETURNING id, name, created_at",
                    {"id": tenant_id, "name": name},
                )
            except asyncpg.UniqueViolationError:
                raise Conflict(f"a tenant named {name!r} already exists") from None
            key, secret = await self.insert_key(tenant_id=tenant_id, name="default")
        return _tenant(row), key, secret

    async def get_tenant(self, *, tenant_id: str) -> Tenant:
        row = await self.db.fetch_one("SELECT id, name, created_at FROM tenants WHERE id = :id", {"id": tenant_id})
        if row is None:
            raise NotFound(f"tenant {tenant_id!r} does not exist")
        return _tenant(row)

    async def find_tenant(self, *, name: str) -> Tenant | None:
        """The tenant of this (unique) name, if any."""
        row = await self.db.fetch_one("SELECT id, name, created_at FROM tenants WHERE name = :n", {"n": name})
        return None if row is None else _tenant(row)

    async def list_tenants(self, *, limit: int, cursor: str | None) -> Page[Tenant]:
        after = decode_cursor(cursor)
        rows = await self.db.fetch_all(
            "SELECT id, name, created_at FROM tenants WHERE (CAST(:after AS text) IS NULL OR id > :after) "
            "ORDER BY id LIMIT :limit",
            {"after": after, "limit": limit + 1},
        )
        items = [_tenant(r) for r in rows[:limit]]
        return Page(items, encode_cursor(items[-1].id) if len(rows) > limit else None)

    async def insert_key(self, *, tenant_id: str, name: str) -> tuple[ApiKey, str]:
        secret = new_key()
        try:
            row = await self.db.fetch_one(
                "INSERT INTO api_keys (id, tenant_id, name, prefix, key_hash) "
                "VALUES (:id, :tenant_id, :name, :prefix, :hash) "
                "RETURNING id, tenant_id, name, prefix, created_at, revoked_at",
                {
                    "id": new_id("key"),
                    "tenant_id": tenant_id,
                    "name": name,
                    "prefix": secret[: len(KEY_PREFIX) + 6],
                    "hash": hash_key(secret),
                },
            )
        except asyncpg.ForeignKeyViolationError:
            raise NotFound(f"tenant {tenant_id!r} does not exist") from None
        return _key(row), secret

    async def list_keys(self, *, tenant_id: str) -> list[ApiKey]:
        await self.get_tenant(tenant_id=tenant_id)
        rows = await self.db.fetch_all(
            "SELECT id, tenant_id, name, prefix, created_at, revoked_at FROM api_keys "
            "WHERE tenant_id = :t ORDER BY created_at, id",
            {"t": tenant_id},
        )
        return [_key(r) for r in rows]

    async def revoke_key(self, *, tenant_id: str, key_id: str) -> ApiKey:
        row = await self.db.fetch_one(
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = :id AND tenant_id = :t "
            "RETURNING id, tenant_id, name, prefix, created_at, revoked_at",
            {"id": key_id, "t": tenant_id},
        )
        if row is None:
            raise NotFound(f"key {key_id!r} does not exist for tenant {tenant_id!r}")
        if self._keys is not None:
            for digest in [h for h, v in list(self._keys.items()) if v.key_id == key_id]:
                self._keys.pop(digest, None)
        return _key(row)

    async def lookup_key(self, key: str) -> KeyLookup | None:
        digest = hash_key(key)
        cached = self._keys.get(digest) if self._keys is not None else None
        if cached is not None:
            return cached
        # Every authenticated request runs this: positional SQL, prepared and cached per connection by asyncpg.
        row = await self.db.fetchrow_raw(
            "SELECT id, tenant_id, revoked_at IS NOT NULL AS revoked FROM api_keys WHERE key_hash = $1", digest
        )
        if row is None:
            return None
        found = KeyLookup(tenant_id=row["tenant_id"], key_id=row["id"], revoked=row["revoked"])
        if self._keys is not None and not found.revoked:
            self._keys[digest] = found
        return found
