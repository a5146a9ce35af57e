"""RAG: collections, documents, chunks (dense vectors and BM25 sparse vectors) and per-collection term statistics.

Revision ID: 0006_rag
Revises: 0001_foundation

`rag_chunks.embedding` is an untyped `vector`, so one table holds collections pinned to models of any dimension;
the HNSW index is a partial expression index per dimension (384, the local all-MiniLM-L6-v2, here), which a query
uses by ordering on `embedding::vector(384)`. Other dimensions are searched exactly (no index yet).

`bm25` is a `sparsevec` holding each term's BM25 term-frequency part (k1 1.2, b 0.75, length-normalised with the
collection's average length when written); the query side holds each query term's IDF from `rag_terms`, so the
score is one inner product. `terms` lists the chunk's term ids for a GIN prefilter (`terms && query_terms`).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006_rag"
down_revision: str | Sequence[str] | None = "0001_foundation"
branch_labels: str | Sequence[str] | None = ("rag",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.execute(
        """
        CREATE TABLE rag_collections (
            id              text PRIMARY KEY,
            tenant_id       text NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
            name            text NOT NULL,
            embedding_model text NOT NULL,
            dims            int NOT NULL,
            chunk_size      int NOT NULL,
            chunk_overlap   double precision NOT NULL,
            document_count  bigint NOT NULL DEFAULT 0,
            chunk_count     bigint NOT NULL DEFAULT 0,
            total_length    bigint NOT NULL DEFAULT 0,
            weighted_avgdl  double precision NOT NULL DEFAULT 0,
            created_at      timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT uq_rag_collections_name UNIQUE (tenant_id, name)
        )
        """
    )
    op.execute("CREATE INDEX ix_rag_collections_tenant ON rag_collections (tenant_id, created_at, id)")
    op.execute(
        """
        CREATE TABLE rag_documents (
            collection_id   text NOT NULL REFERENCES rag_collections(id) ON DELETE CASCADE,
            id              text NOT NULL,
            tenant_id       text NOT NULL,
            metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
            chunk_count     int NOT NULL,
            length          bigint NOT NULL,
            created_at      timestamptz NOT NULL DEFAULT now(),
            updated_at      timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_rag_documents PRIMARY KEY (collection_id, id)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE rag_chunks (
            id              bigserial PRIMARY KEY,
            tenant_id       text NOT NULL,
            collection_id   text NOT NULL,
            document_id     text NOT NULL,
            seq             int NOT NULL,
            text            text NOT NULL,
            metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
            page            int,
            heading         text,
            start_char      int NOT NULL,
            end_char        int NOT NULL,
            length          int NOT NULL,
            terms           int[] NOT NULL,
            tfs             int[] NOT NULL,
            bm25            sparsevec NOT NULL,
            dims            int NOT NULL,
            embedding       vector NOT NULL,
            CONSTRAINT fk_rag_chunks_document FOREIGN KEY (collection_id, document_id)
                REFERENCES rag_documents (collection_id, id) ON DELETE CASCADE
        )
        """
    )
    op.execute("CREATE INDEX ix_rag_chunks_document ON rag_chunks (collection_id, document_id, seq)")
    op.execute("CREATE INDEX ix_rag_chunks_terms ON rag_chunks USING gin (terms)")
    op.execute("CREATE INDEX ix_rag_chunks_metadata ON rag_chunks USING gin (metadata jsonb_path_ops)")
    op.execute(
        "CREATE INDEX ix_rag_chunks_hnsw_384 ON rag_chunks USING hnsw ((embedding::vector(384)) vector_cosine_ops) "
        "WHERE dims = 384"
    )
    op.execute(
        """
        CREATE TABLE rag_terms (
            collection_id   text NOT NULL REFERENCES rag_collections(id) ON DELETE CASCADE,
            term            int NOT NULL,
            df              int NOT NULL,
            CONSTRAINT pk_rag_terms PRIMARY KEY (collection_id, term)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE rag_terms")
    op.execute("DROP TABLE rag_chunks")
    op.execute("DROP TABLE rag_documents")
    op.execute("DROP TABLE rag_collections")
