"""A loaded model version: its ONNX session, and the checks that turn a request's values into the session's inputs.

Imported when a replica first serves a model (it imports onnxruntime). `load` refuses an artifact whose SHA-256 is
not the one recorded at training. Inputs arrive as JSON rows (`columns_from_rows`) or as Open Inference Protocol
tensors (`columns_from_tensors`); both give one array per feature, in feature order, or a `BadTensor` that says
exactly what does not fit. A category never seen in training encodes as all zeros (as scikit-learn's
`handle_unknown="ignore"` does): it is replaced by a value outside the training categories before it reaches ONNX.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from app.errors import PayloadTooLarge
from plugins.ml.errors import ArtifactRefused, BadTensor
from plugins.ml.schemas import MAX_PREDICT_ROWS, InferInput, TensorMetadata

INTEGER_TYPES = {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}
NUMBER_TYPES = INTEGER_TYPES | {"FP16", "FP32", "FP64"}


@dataclass(frozen=True)
class Feature:
    name: str
    numeric: bool
    categories: frozenset[str]
    unseen: str  # a value outside `categories`, sent to ONNX in place of any category it never saw


@dataclass(frozen=True)
class Prediction:
    labels: list[Any]
    probabilities: list[list[float]] | None
    scores: list[float] | None


def _features(raw: Sequence[Mapping[str, Any]]) -> list[Feature]:
    out = []
    for f in raw:
        categories = frozenset(f.get("categories") or ())
        unseen = next(c for c in ("", "\x01", "\x01\x01", "\x01\x01\x01") if c not in categories)
        out.append(Feature(name=f["name"], numeric=f["type"] == "number", categories=categories, unseen=unseen))
    return out


class LoadedModel:
    """One model version, ready to predict. Immutable, so replicas cache it until the version is deleted."""

    def __init__(self, *, artifact: bytes, task: str, features: Sequence[Mapping[str, Any]], classes: list[Any] | None):
        options = ort.SessionOptions()
        # One thread per session: the replica's other requests and the machine's other processes keep their cores.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(artifact, sess_options=options, providers=["CPUExecutionProvider"])
        self.task = task
        self.features = _features(features)
        self.classes = classes
        self.output_names = [o.name for o in self.session.get_outputs()]

    @staticmethod
    def load(
        *, artifact: bytes, sha256: str, task: str, features: Sequence[Mapping[str, Any]], classes: list[Any] | None
    ) -> LoadedModel:
        """The version's session, or ArtifactRefused when the bytes are not the ones trained (never loaded)."""
        if hashlib.sha256(artifact).hexdigest() != sha256:
            raise ArtifactRefused(
                "the stored artifact does not match the SHA-256 recorded when it was trained; it was not loaded "
                "(delete this version and train again)"
            )
        return LoadedModel(artifact=artifact, task=task, features=features, classes=classes)

    # --- inputs ---------------------------------------------------------------------------------------------------

    def _feeds(self, columns: list[NDArray[Any]]) -> dict[str, NDArray[Any]]:
        feeds = {}
        for j, (feature, column) in enumerate(zip(self.features, columns, strict=True)):
            if feature.numeric:
                feeds[f"x{j}"] = column.astype(np.float32).reshape(-1, 1)
            else:
                known = feature.categories
                values = [v if v in known else feature.unseen for v in column.tolist()]
                feeds[f"x{j}"] = np.array(values, dtype=object).reshape(-1, 1)
        return feeds

    def columns_from_rows(self, rows: Sequence[Mapping[str, Any]]) -> list[NDArray[Any]]:
        """One array per feature from JSON rows keyed by feature name."""
        names = [f.name for f in self.features]
        expected = set(names)
        for i, row in enumerate(rows):
            if row.keys() != expected:
                missing, unknown = sorted(expected - row.keys()), sorted(row.keys() - expected)
                raise BadTensor(
                    f"row {i} does not fit the model's features (missing {missing[:10]}, unknown {unknown[:10]})",
                    extra={"row": i, "missing": missing[:10], "unknown": unknown[:10]},
                )
        columns = []
        for feature in self.features:
            values = [row[feature.name] for row in rows]
            columns.append(_column(feature, values, where=f"feature {feature.name!r}", datatype=None))
        return columns

    def columns_from_tensors(self, inputs: Sequence[InferInput]) -> list[NDArray[Any]]:
        """One array per feature from V2 input tensors: one 2-D [rows, features] tensor in feature order, or one
        tensor per feature named after it ([rows] or [rows, 1])."""
        by_name = {f.name: f for f in self.features}
        names = [t.name for t in inputs]
        if len(names) != len(set(names)):
            raise BadTensor("an input is named twice")
        if len(inputs) == 1 and (inputs[0].name not in by_name or (len(inputs[0].shape) == 2 and len(by_name) > 1)):
            return self._from_matrix(inputs[0])
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise BadTensor(
                f"unknown input {unknown[0]!r}: send one 2-D tensor [rows, {len(self.features)}] in feature order, "
                f"or one tensor per feature ({', '.join(list(by_name)[:20])})",
                extra={"input": unknown[0]},
            )
        missing = [f.name for f in self.features if f.name not in names]
        if missing:
            raise BadTensor(f"missing input {missing[0]!r} (one tensor per feature)", extra={"input": missing[0]})
        given = {t.name: t for t in inputs}
        rows: int | None = None
        columns = []
        for feature in self.features:
            tensor = given[feature.name]
            if len(tensor.shape) == 2 and tensor.shape[1] != 1:
                raise BadTensor(f"input {tensor.name!r} has shape {tensor.shape}: one feature is [rows] or [rows, 1]")
            n = tensor.shape[0]
            if rows is not None and n != rows:
                raise BadTensor(f"input {tensor.name!r} has a first dimension of {n}, the inputs before it {rows}")
            rows = n
            _check_rows(n)
            flat = _flatten(tensor, n)
            columns.append(_column(feature, flat, where=f"input {tensor.name!r}", datatype=tensor.datatype))
        return columns

    def _from_matrix(self, tensor: InferInput) -> list[NDArray[Any]]:
        width = len(self.features)
        if len(tensor.shape) != 2 or tensor.shape[1] != width:
            raise BadTensor(
                f"input {tensor.name!r} has shape {tensor.shape}: the model takes [rows, {width}] (its features in "
                "order), or one tensor per feature",
                extra={"input": tensor.name, "shape": tensor.shape},
            )
        n = tensor.shape[0]
        _check_rows(n)
        if tensor.datatype != "BYTES" and not all(f.numeric for f in self.features):
            raise BadTensor(
                f"input {tensor.name!r} is {tensor.datatype}, but the model has categorical features: send BYTES "
                "(numbers as numbers or text), or one tensor per feature"
            )
        flat = _flatten(tensor, n * width)
        return [
            _column(
                f, flat[j::width], where=f"input {tensor.name!r}, column {j} ({f.name!r})", datatype=tensor.datatype
            )
            for j, f in enumerate(self.features)
        ]

    # --- outputs --------------------------------------------------------------------------------------------------

    def predict(self, columns: list[NDArray[Any]]) -> Prediction:
        out = self.session.run(None, self._feeds(columns))
        labels = np.asarray(out[0]).reshape(-1)
        if self.task == "regression":
            return Prediction(labels=labels.astype(np.float64).tolist(), probabilities=None, scores=None)
        if self.task == "anomaly":
            scores = np.asarray(out[1]).reshape(-1).astype(np.float64).tolist()
            return Prediction(labels=labels.astype(np.int64).tolist(), probabilities=None, scores=scores)
        proba = np.asarray(out[1]).astype(np.float64).tolist()
        return Prediction(labels=labels.tolist(), probabilities=proba, scores=None)


def tensor_metadata(
    task: str, features: Sequence[Mapping[str, Any]], classes: list[Any] | None
) -> tuple[list[TensorMetadata], list[TensorMetadata]]:
    """Inputs and outputs of a version, from its registry record alone (no artifact read)."""
    inputs = [
        TensorMetadata(name=f["name"], datatype="FP32" if f["type"] == "number" else "BYTES", shape=[-1, 1])
        for f in features
    ]
    label = "FP32" if task == "regression" else "INT64"
    if task == "classification" and any(isinstance(c, str) for c in classes or ()):
        label = "BYTES"
    outputs = [TensorMetadata(name="predict", datatype=label, shape=[-1])]
    if task == "classification":
        outputs.append(TensorMetadata(name="predict_proba", datatype="FP32", shape=[-1, len(classes or ())]))
    if task == "anomaly":
        outputs.append(TensorMetadata(name="decision_function", datatype="FP32", shape=[-1]))
    return inputs, outputs


def _check_rows(n: int) -> None:
    if n > MAX_PREDICT_ROWS:
        raise PayloadTooLarge(
            f"at most {MAX_PREDICT_ROWS:,} rows per prediction request", extra={"limit": MAX_PREDICT_ROWS}
        )
    if n < 1:
        raise BadTensor("no rows: the first dimension of the shape is 0")


def _flatten(tensor: InferInput, expected: int) -> list[Any]:
    """The tensor's data row-major and flat (it may come nested as its shape), checked against the shape."""
    flat: list[Any] = []
    for item in tensor.data:
        if isinstance(item, list):
            for inner in item:
                if isinstance(inner, list):
                    raise BadTensor(f"input {tensor.name!r}: data nests deeper than its shape")
                flat.append(inner)
        else:
            flat.append(item)
    if len(flat) != expected:
        raise BadTensor(
            f"input {tensor.name!r} has {len(flat)} values, its shape {tensor.shape} says {expected}",
            extra={"input": tensor.name},
        )
    return flat


def _column(feature: Feature, values: list[Any], *, where: str, datatype: str | None) -> NDArray[Any]:
    """One feature's values as floats (numbers) or strings (categories), or BadTensor naming the first bad one."""
    if feature.numeric:
        if datatype is not None and datatype not in NUMBER_TYPES and datatype != "BYTES":
            raise BadTensor(f"{where}: datatype {datatype} does not fit a number feature (use FP32 or FP64)")
        if {type(v) for v in values} <= {int, float}:  # the common case, checked by numpy at once
            try:
                numbers = np.asarray(values, dtype=np.float64)
            except OverflowError:  # an integer past float64: the loop below names it
                pass
            else:
                _check_numbers(numbers, values, where=where, datatype=datatype)
                return numbers
        out = []
        for i, v in enumerate(values):
            if type(v) is str and datatype == "BYTES":
                try:
                    out.append(float(v))
                except ValueError:
                    raise BadTensor(f"{where}, row {i}: {v[:50]!r} is not a number") from None
            elif type(v) in (int, float):
                try:
                    out.append(float(v))
                except OverflowError:
                    raise BadTensor(f"{where}, row {i}: the number is too large (past float64)") from None
            else:
                raise BadTensor(f"{where}, row {i}: {str(v)[:50]!r} is not a number")
        numbers = np.asarray(out, dtype=np.float64)
        _check_numbers(numbers, values, where=where, datatype=datatype)
        return numbers
    if datatype is not None and datatype != "BYTES":
        raise BadTensor(f"{where}: the feature {feature.name!r} is categorical: send BYTES (text)")
    texts = []
    for i, v in enumerate(values):
        if type(v) is str:
            texts.append(v)
        elif type(v) is int or (type(v) is float and math.isfinite(v)):
            texts.append(str(v))  # a category that looks like a number
        else:
            raise BadTensor(f"{where}, row {i}: {str(v)[:50]!r} is not a category (text)")
    return np.asarray(texts, dtype=object)


def _check_numbers(numbers: NDArray[Any], values: list[Any], *, where: str, datatype: str | None) -> None:
    """BadTensor naming the first value that is not finite, or breaks the integer datatype it was sent as."""
    bad = ~np.isfinite(numbers)
    if datatype in INTEGER_TYPES:
        bad |= np.isfinite(numbers) & (numbers != np.floor(numbers))
    if datatype is not None and datatype.startswith("UINT"):
        bad |= numbers < 0
    if not bad.any():
        return
    i = int(np.argmax(bad))
    v = numbers[i]
    if not math.isfinite(v):
        raise BadTensor(f"{where}, row {i}: {values[i]} is not allowed (finite numbers only)")
    if v < 0 and datatype is not None and datatype.startswith("UINT"):
        raise BadTensor(f"{where}, row {i}: {values[i]} is negative, which {datatype} cannot be")
    raise BadTensor(f"{where}, row {i}: {values[i]} is not an integer, as {datatype} says")
