"""The rag plugin's settings (`FAAS_RAG_*`): `faas config` lists them with their defaults."""

from __future__ import annotations

from pydantic import Field

from app.config import SettingsGroup


class RagConfig(SettingsGroup):
    group = "rag"

    exact_search_max_chunks: int = Field(
        default=10_000,
        ge=0,
        le=10_000_000,
        description="Dense search of a collection up to this many chunks is exact (every chunk compared); larger "
        "ones use the HNSW index with iterative scans",
    )
    hnsw_ef_search: int = Field(default=100, ge=10, le=1000, description="HNSW candidate list size for dense search")
    embed_batch: int = Field(default=64, ge=1, le=2048, description="Chunks per embedding call to the gateway")
    sync_max_chunks: int = Field(
        default=128,
        ge=0,
        le=100_000,
        description="A call adding more chunks than this to embed is indexed by a job on the core queue (the answer "
        "names it); up to this many are embedded before the answer",
    )
