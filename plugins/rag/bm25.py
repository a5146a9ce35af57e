"""BM25 as pgvector sparse vectors: pure logic, no I/O.

PostgreSQL tokenises (`to_tsvector('english', ...)`: lower case, stop words dropped, Snowball stems) and maps each
lexeme to a term id with a stable hash (`TERM_ID_SQL`, md5-based, so ids never change across PostgreSQL versions).
A chunk stores, per term, the term-frequency half of BM25 (`tf_weight`); a query holds, per term, its inverse
document frequency in the collection (`idf`); their inner product is the chunk's BM25 score:

    score(q, c) = sum over t in q of idf(t) * tf(t, c) * (k1 + 1) / (tf(t, c) + k1 * (1 - b + b * |c| / avgdl))

The length normalisation uses the collection's average chunk length when the chunk was written; the service
re-weights a collection whose average drifts by more than `REWEIGHT_DRIFT` since.
"""

from __future__ import annotations

import math

K1 = 1.2
B = 0.75
# Term ids live in 1..SPACE (pgvector's sparsevec allows up to 1e9 dimensions).
SPACE = 1_000_000_000
REWEIGHT_DRIFT = 0.2

TERM_ID_SQL = "(((('x' || substr(md5({lexeme}), 1, 8))::bit(32)::int & 1073741823) % 1000000000) + 1)"


def tokenize_sql(text: str) -> str:
    """SQL of (term, tf) rows for the text expression `text` (colliding lexemes add up)."""
    term = TERM_ID_SQL.format(lexeme="v.lexeme")
    return (
        f"SELECT {term} AS term, sum(coalesce(array_length(v.positions, 1), 1))::int AS tf "
        f"FROM unnest(to_tsvector('english', {text})) AS v GROUP BY 1"
    )


def tf_weight(tf: int, length: int, avgdl: float) -> float:
    norm = 1.0 - B + B * (length / avgdl if avgdl > 0 else 1.0)
    return tf * (K1 + 1.0) / (tf + K1 * norm)


def idf(df: int, n: int) -> float:
    """Lucene's (always positive) inverse document frequency."""
    return math.log(1.0 + (n - df + 0.5) / (df + 0.5))


def sparse_literal(terms: list[int], weights: list[float]) -> str:
    """A sparsevec literal (`{id:value,...}/SPACE`); `terms` ascending."""
    body = ",".join(f"{t}:{w!r}" for t, w in zip(terms, weights, strict=True))
    return f"{{{body}}}/{SPACE}"


def chunk_vector(terms: list[int], tfs: list[int], avgdl: float) -> str:
    length = sum(tfs)
    return sparse_literal(terms, [tf_weight(tf, length, avgdl) for tf in tfs])


# SQL that recomputes every chunk vector of collection $1 with average length $2 (the same formula as above).
REWEIGHT_SQL = f"""
UPDATE rag_chunks c SET bm25 = (
    SELECT format('{{%s}}/{SPACE}', coalesce(string_agg(
        u.t || ':' || (u.f * {K1 + 1.0} / (u.f + {K1} * (1 - {B} + {B} * c.length / $2::float8))), ','
        ORDER BY u.t), ''))::sparsevec
    FROM unnest(c.terms, c.tfs) AS u(t, f))
WHERE c.collection_id = $1
"""
