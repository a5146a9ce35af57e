"""Training: a scikit-learn pipeline fitted on a `Dataset`, measured on a holdout split, converted to ONNX.

CPU-bound and synchronous: the training job runs `train` in a worker thread. This module imports scikit-learn and
skl2onnx, which take seconds to import: only the job (and tests, benchmarks) import it, never at start-up.

The pipeline scales numeric columns (StandardScaler; tree ensembles take them as they are) and one-hot encodes
categorical ones (unknown categories at prediction time encode as all zeros), then fits the allowlisted estimator.
The artifact is the ONNX file alone: no pickle is written or read anywhere. Its inputs are one [N, 1] tensor per
feature, `x0`, `x1`, ... in feature order (FLOAT for numbers, STRING for categories), so a client's feature names
never need sanitising. Before a version is
kept, the ONNX model must reproduce the pipeline on the held-out rows (`onnx_agreement`): a conversion that drifts
fails the job rather than serving wrong answers.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from importlib.metadata import version as package_version
from typing import Any

import numpy as np
from numpy.typing import NDArray
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    IsolationForest,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, mean_squared_error, r2_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from plugins.ml.data import Dataset
from plugins.ml.errors import ConversionFailed

# ONNX opsets the artifacts use: ai.onnx.ml 3 is what IsolationForest's converter needs (checked: ../shared/FACTS.md).
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
# Predictions agree when labels are equal, or numbers within float32 rounding of the pipeline's.
RTOL, ATOL = 1e-4, 1e-3
TREES = ("random_forest", "gradient_boosting", "isolation_forest")
LIBRARIES = ("scikit-learn", "skl2onnx", "onnx", "onnxruntime", "numpy")


@dataclass(frozen=True)
class Trained:
    artifact: bytes
    sha256: str
    features: list[dict[str, Any]]
    classes: list[Any] | None
    metrics: dict[str, float | None]
    library_versions: dict[str, str]
    training_rows: int
    holdout_rows: int
    train_seconds: float
    # Kept for tests and benchmarks (compare ONNX with the pipeline); never stored.
    pipeline: Any
    holdout: NDArray[Any]


def _estimator(task: str, name: str, params: dict[str, Any]) -> Any:
    p = dict(params)
    if name == "logistic_regression":
        return LogisticRegression(**p)
    if name == "linear_regression":
        return LinearRegression(**p)
    if name == "ridge":
        return Ridge(**p)
    if name == "random_forest":
        cls = RandomForestClassifier if task == "classification" else RandomForestRegressor
        return cls(n_jobs=1, **p)  # one core: the machine's other jobs and requests keep theirs
    if name == "gradient_boosting":
        cls = GradientBoostingClassifier if task == "classification" else GradientBoostingRegressor
        return cls(**p)
    if name == "isolation_forest":
        return IsolationForest(n_jobs=1, **p)
    raise ValueError(f"no estimator {name!r}")


def matrix(dataset: Dataset) -> NDArray[Any]:
    """The feature columns as one object array [rows, features] (floats and strings side by side)."""
    x = np.empty((dataset.rows, len(dataset.features)), dtype=object)
    for j, column in enumerate(dataset.features):
        x[:, j] = column.values
    return x


def pipeline(dataset: Dataset, task: str, estimator: str, params: dict[str, Any]) -> Pipeline:
    numeric = [j for j, c in enumerate(dataset.features) if c.kind == "number"]
    categorical = [j for j, c in enumerate(dataset.features) if c.kind == "category"]
    parts: list[tuple[str, Any, list[int]]] = []
    if numeric:
        # Trees split on raw values: scaling changes nothing for them but, computed in float32 by ONNX, moves values
        # across split thresholds (RandomForestRegressor on diabetes differed by up to 3.7 on half the rows).
        parts.append(("numbers", "passthrough" if estimator in TREES else StandardScaler(), numeric))
    if categorical:
        # Dense, so that passed-through numbers (an object array) and the encoding stack into one float matrix.
        parts.append(("categories", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical))
    return Pipeline([("prepare", ColumnTransformer(parts)), ("estimator", _estimator(task, estimator, params))])


def onnx_inputs(dataset: Dataset) -> list[tuple[str, Any]]:
    return [
        (f"x{j}", FloatTensorType([None, 1]) if c.kind == "number" else StringTensorType([None, 1]))
        for j, c in enumerate(dataset.features)
    ]


def onnx_feeds(dataset: Dataset, x: NDArray[Any]) -> dict[str, NDArray[Any]]:
    """ONNX feeds from an object matrix of the dataset's features (for the agreement check, tests, benchmarks)."""
    return {
        f"x{j}": x[:, j : j + 1].astype(np.float32 if c.kind == "number" else str)
        for j, c in enumerate(dataset.features)
    }


def _metrics(task: str, pipe: Pipeline, x: NDArray[Any], y: NDArray[Any] | None) -> dict[str, float | None]:
    if task == "anomaly":
        return {"anomaly_rate": float(np.mean(pipe.predict(x) == -1))}
    assert y is not None
    predicted = pipe.predict(x)
    if task == "regression":
        return {
            "r2": float(r2_score(y, predicted)) if len(y) > 1 else None,
            "mae": float(mean_absolute_error(y, predicted)),
            "rmse": float(np.sqrt(mean_squared_error(y, predicted))),
        }
    out: dict[str, float | None] = {
        "accuracy": float(accuracy_score(y, predicted)),
        "f1_macro": float(f1_score(y, predicted, average="macro")),
        "roc_auc": None,
    }
    classes = list(pipe.classes_)
    if set(np.unique(y)) == set(classes):  # AUC needs every class in the holdout
        proba = pipe.predict_proba(x)
        out["roc_auc"] = float(
            roc_auc_score(y, proba[:, 1]) if len(classes) == 2 else roc_auc_score(y, proba, multi_class="ovr")
        )
    return out


def _convert(pipe: Pipeline, dataset: Dataset, task: str) -> bytes:
    options = {id(pipe): {"zipmap": False}} if task == "classification" else None
    try:
        model = to_onnx(pipe, initial_types=onnx_inputs(dataset), options=options, target_opset=TARGET_OPSET)
    except Exception as exc:  # a converter's refusal: say which estimator, not a trace
        raise ConversionFailed(f"the trained pipeline did not convert to ONNX: {type(exc).__name__}: {exc}") from None
    data: bytes = model.SerializeToString()
    return data


def agreement(task: str, pipe: Pipeline, artifact: bytes, dataset: Dataset, x: NDArray[Any]) -> float:
    """Share of rows of `x` whose ONNX prediction matches the pipeline's (labels equal; numbers within float32)."""
    import onnxruntime as ort

    session = ort.InferenceSession(artifact, providers=["CPUExecutionProvider"])
    out = session.run(None, onnx_feeds(dataset, x))
    expected = pipe.predict(x)
    got = np.asarray(out[0]).reshape(-1)
    if task == "regression":
        same = np.isclose(got.astype(np.float64), expected.astype(np.float64), rtol=RTOL, atol=ATOL)
    else:
        same = got.astype(expected.dtype) == expected
    return float(np.mean(same)) if len(same) else 1.0


def train(
    dataset: Dataset, *, task: str, estimator: str, params: dict[str, Any], test_size: float, seed: int = 0
) -> Trained:
    started = time.perf_counter()
    x = matrix(dataset)
    y: NDArray[Any] | None = None
    if dataset.target is not None and task != "anomaly":
        y = np.asarray(dataset.target.values)
    stratify = None
    if task == "classification" and y is not None:
        _, counts = np.unique(y, return_counts=True)
        holdout = max(1, round(len(y) * test_size))
        stratify = y if counts.min() >= 2 and holdout >= len(counts) else None
    if y is None:
        x_train, x_test = train_test_split(x, test_size=test_size, random_state=seed)
        y_train = y_test = None
    else:
        x_train, x_test, y_train, y_test = train_test_split(
            x, y, test_size=test_size, random_state=seed, stratify=stratify
        )
    if task == "classification" and y_train is not None and len(np.unique(y_train)) < 2:
        raise ConversionFailed("the training split holds a single class: send more rows of the other classes")
    pipe = pipeline(dataset, task, estimator, params)
    pipe.fit(x_train, y_train)
    metrics = _metrics(task, pipe, x_test, y_test)
    artifact = _convert(pipe, dataset, task)
    agreed = metrics["onnx_agreement"] = agreement(task, pipe, artifact, dataset, x_test)
    # Trees compare float32 thresholds in ONNX and float64 ones in scikit-learn: a value on a threshold can fall
    # either side, so a rare differing label is expected; a conversion that is wrong differs on many.
    if agreed < 0.98:
        raise ConversionFailed(
            f"the ONNX model agreed with the trained pipeline on {agreed:.1%} of the held-out "
            "rows only: the version is not kept"
        )
    classes = [c.item() if hasattr(c, "item") else c for c in pipe.classes_] if task == "classification" else None
    features = [
        {"name": c.name, "type": c.kind}
        | ({"categories": sorted({str(v) for v in c.values})} if c.kind == "category" else {})
        for c in dataset.features
    ]
    return Trained(
        artifact=artifact,
        sha256=hashlib.sha256(artifact).hexdigest(),
        features=features,
        classes=classes,
        metrics=metrics,
        library_versions={name: package_version(name) for name in LIBRARIES},
        training_rows=len(x_train),
        holdout_rows=len(x_test),
        train_seconds=round(time.perf_counter() - started, 3),
        pipeline=pipe,
        holdout=x_test,
    )
