"""Embeddings in and out: checking the `input` texts and the size of the answer they ask for, fitting the local
model's vectors to `dimensions`, and the OpenAI embeddings list (float or base64, as the official SDK asks by
default).

The answer's size is checked before any work: a few kilobytes of short inputs with a large `dimensions` would
otherwise ask for an answer thousands of times larger than the request (2,048 inputs x 8,192 dimensions is 16.8
million numbers, ~80 MB of JSON). `MAX_OUTPUT_VALUES` (inputs x dimensions) holds the local model's 2,048 x 384
and a provider's 2,048 x 512; more dimensions mean fewer inputs per request.
"""

from __future__ import annotations

import base64
from typing import Any

from app.errors import InvalidInput

MAX_INPUTS = 2048
MAX_DIMENSIONS = 3072  # the largest OpenAI embedding model's; the local model pads its 384 up to this
MAX_OUTPUT_VALUES = 2048 * 512
# From this many numbers on, resizing and encoding an answer (tens of milliseconds and up) run on a worker thread.
OFF_LOOP_VALUES = 65_536


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


def check_output_size(inputs: int, dimensions: int | None) -> None:
    """Refuse a request whose answer would hold more than MAX_OUTPUT_VALUES numbers (`dimensions` None: the
    provider's own size, which the request cannot inflate)."""
    if dimensions is not None and inputs * dimensions > MAX_OUTPUT_VALUES:
        raise InvalidInput(
            f"{inputs} inputs x {dimensions} dimensions is {inputs * dimensions:,} numbers, over the limit of "
            f"{MAX_OUTPUT_VALUES:,} per request: send at most {max(1, MAX_OUTPUT_VALUES // dimensions)} inputs at "
            "this size, or ask for fewer dimensions",
            extra={"code": "output_too_large", "param": "input", "limit": MAX_OUTPUT_VALUES},
        )


def resize(vector: list[float], size: int) -> list[float]:
    """Shortened (and re-normalised) like OpenAI's `dimensions`, or zero-padded, which keeps every cosine."""
    if size >= len(vector):
        return vector + [0.0] * (size - len(vector))
    head = vector[:size]
    norm = sum(x * x for x in head) ** 0.5 or 1.0
    return [x / norm for x in head]


def values_in(vectors: list[list[float]]) -> int:
    return len(vectors) * (len(vectors[0]) if vectors else 0)


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
