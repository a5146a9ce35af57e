"""Embeddings in and out: checking the `input` texts, fitting the local model's vectors to `dimensions`, and
the OpenAI embeddings list (float or base64, as the official SDK asks by default)."""

from __future__ import annotations

import base64
from typing import Any

from app.errors import InvalidInput

MAX_INPUTS = 2048


def texts_of(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not value or not all(isinstance(v, str) for v in value):
        raise InvalidInput("`input` must be a non-empty string or a list of strings (token arrays are not accepted)")
    if any(not v for v in value):
        raise InvalidInput("`input` must not contain empty strings")
    if len(value) > MAX_INPUTS:
        raise InvalidInput(f"`input` has {len(value)} items; send at most {MAX_INPUTS} per request")
    return list(value)


def resize(vector: list[float], size: int) -> list[float]:
    """Shortened (and re-normalised) like OpenAI's `dimensions`, or zero-padded, which keeps every cosine."""
    if size >= len(vector):
        return vector + [0.0] * (size - len(vector))
    head = vector[:size]
    norm = sum(x * x for x in head) ** 0.5 or 1.0
    return [x / norm for x in head]


def to_base64(vector: list[float]) -> str:
    import numpy as np

    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()


def embeddings_list(vectors: list[list[float]], *, model: str, tokens: int, encoding: str) -> dict[str, Any]:
    def encode(v: list[float]) -> list[float] | str:
        return to_base64(v) if encoding == "base64" else v

    return {
        "object": "list",
        "model": model,
        "data": [{"object": "embedding", "index": i, "embedding": encode(v)} for i, v in enumerate(vectors)],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
