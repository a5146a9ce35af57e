"""The in-process embedding model: order, de-duplication and token counts."""

from __future__ import annotations

from plugins.gateway.local_embeddings import DIMENSIONS, local_embedder


def test_repeated_inputs_are_embedded_once_and_all_counted() -> None:
    """A request of many identical texts costs one model run per distinct text, yet usage counts every input."""
    model = local_embedder()
    vectors, tokens = model.embed(["same text"] * 500 + ["other"])
    single, single_tokens = model.embed(["same text"])
    assert len(vectors) == 501 and len(vectors[0]) == DIMENSIONS
    assert vectors[0] == vectors[499] == single[0] != vectors[500]
    assert tokens == 500 * single_tokens + model.count_tokens(["other"])
