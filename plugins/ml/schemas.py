"""Request and response types of the ml plugin: the single source for validation and the OpenAPI document.

Two families: the registry and JSON API under `/api/v1/ml` (train, models, versions, aliases, predict), and the Open
Inference Protocol (KServe V2) REST types served at `/v2`. Every limit a request can break is declared here (rows,
columns, characters, tensor elements), so the document states it and a request past it is refused before any work.
Client strings end up in PostgreSQL text and in ONNX string tensors: the document refuses NUL in them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StrictFloat, StrictInt, WithJsonSchema, model_validator

from app.schemas import PositiveInt, Schema, json_integer

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
ALIAS_PATTERN = r"^[a-z][a-z0-9_.-]{0,63}$"
CHAMPION = "champion"
MAX_FEATURES = 200  # feature columns of a model (the target is one more)
MAX_TRAIN_ROWS = 100_000  # rows one training request may carry (JSON rows; a CSV is bounded by its characters too)
MAX_CSV_CHARS = 8_000_000
MAX_PREDICT_ROWS = 10_000
MAX_TENSOR_ELEMENTS = 100_000  # elements of one V2 input tensor (and of all of them together)
MAX_VALUE_CHARS = 1_000  # characters of one categorical value

ModelName = Annotated[
    str, Field(pattern=NAME_PATTERN, description="1-128 of A-Z a-z 0-9 _ . -, starting with a letter or digit")
]
Alias = Annotated[
    str, Field(pattern=ALIAS_PATTERN, description="1-64 of a-z 0-9 _ . -, starting with a letter (e.g. `champion`)")
]
ColumnName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\x00]+$")]
Text = Annotated[str, Field(max_length=MAX_VALUE_CHARS, pattern=r"^[^\x00]*$")]
Value = StrictInt | StrictFloat | Text
# A row: feature name -> value. Written out for the document, because pydantic does not state a dict's key rules
# (`propertyNames`) there.
Row = Annotated[
    dict[ColumnName, Value],
    WithJsonSchema(
        {
            "type": "object",
            "propertyNames": {"minLength": 1, "maxLength": 128, "pattern": r"^[^\x00]+$"},
            "additionalProperties": {
                "anyOf": [
                    {"type": "number"},
                    {"type": "string", "maxLength": MAX_VALUE_CHARS, "pattern": r"^[^\x00]*$"},
                ]
            },
        }
    ),
]
Task = Literal["classification", "regression", "anomaly"]
Estimator = Literal[
    "logistic_regression",
    "linear_regression",
    "ridge",
    "random_forest",
    "gradient_boosting",
    "isolation_forest",
]
# Which estimators each task takes: every one converts to ONNX (skl2onnx) with one-hot encoding and scaling.
ESTIMATORS: dict[str, tuple[str, ...]] = {
    "classification": ("logistic_regression", "random_forest", "gradient_boosting"),
    "regression": ("linear_regression", "ridge", "random_forest", "gradient_boosting"),
    "anomaly": ("isolation_forest",),
}
Seed = Annotated[int, Field(ge=0, le=2**31 - 1), json_integer]


# --- Estimator parameters: each estimator's allowlist, with bounds that keep one training run affordable ----------


class LogisticRegressionParams(Schema):
    C: float = Field(default=1.0, gt=0, le=1e6, description="Inverse regularisation strength")
    max_iter: Annotated[int, Field(ge=10, le=5000), json_integer] = 1000
    class_weight: Literal["balanced"] | None = None


class LinearRegressionParams(Schema):
    fit_intercept: bool = True


class RidgeParams(Schema):
    alpha: float = Field(default=1.0, ge=0, le=1e6)
    fit_intercept: bool = True


class RandomForestParams(Schema):
    n_estimators: Annotated[int, Field(ge=1, le=500), json_integer] = 100
    max_depth: Annotated[int, Field(ge=1, le=64), json_integer] | None = None
    min_samples_leaf: Annotated[int, Field(ge=1, le=10_000), json_integer] = 1
    random_state: Seed = 0


class GradientBoostingParams(Schema):
    n_estimators: Annotated[int, Field(ge=1, le=1000), json_integer] = 100
    learning_rate: float = Field(default=0.1, gt=0, le=1)
    max_depth: Annotated[int, Field(ge=1, le=16), json_integer] = 3
    subsample: float = Field(default=1.0, gt=0, le=1)
    random_state: Seed = 0


class IsolationForestParams(Schema):
    n_estimators: Annotated[int, Field(ge=1, le=500), json_integer] = 100
    contamination: Literal["auto"] | Annotated[float, Field(gt=0, le=0.5)] = "auto"
    random_state: Seed = 0


PARAMS: dict[str, type[Schema]] = {
    "logistic_regression": LogisticRegressionParams,
    "linear_regression": LinearRegressionParams,
    "ridge": RidgeParams,
    "random_forest": RandomForestParams,
    "gradient_boosting": GradientBoostingParams,
    "isolation_forest": IsolationForestParams,
}
Params = (
    LogisticRegressionParams
    | LinearRegressionParams
    | RidgeParams
    | RandomForestParams
    | GradientBoostingParams
    | IsolationForestParams
)


class TrainIn(Schema):
    """Train a new version of the model from `rows` (JSON objects, one per row) or `csv` (with a header line)."""

    model_config = ConfigDict(
        json_schema_extra={"oneOf": [{"required": ["rows"]}, {"required": ["csv"]}]},
        ser_json_inf_nan="constants",  # a remote front forwards a NaN as sent, to be refused where it is served
    )

    rows: list[Row] | None = Field(
        default=None, min_length=1, max_length=MAX_TRAIN_ROWS, description="One object per row, the same keys in each"
    )
    csv: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_CSV_CHARS,
        pattern=r"^[^\x00]*$",
        description="Comma-separated values with a header line; a column whose every value is a number is numeric",
    )
    target: ColumnName | None = Field(
        default=None, description="The column to predict (required for classification and regression)"
    )
    task: Task
    estimator: Estimator = Field(
        description="classification: logistic_regression, random_forest, gradient_boosting; regression: "
        "linear_regression, ridge, random_forest, gradient_boosting; anomaly: isolation_forest"
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="The estimator's parameters (see the *Params schemas); anything else is refused",
        json_schema_extra=lambda schema: schema.update(anyOf=[p.model_json_schema() for p in PARAMS.values()]),
    )
    test_size: float = Field(default=0.2, ge=0.05, le=0.5, description="Share of rows held out for the metrics")

    @model_validator(mode="after")
    def _consistent(self) -> TrainIn:
        if (self.rows is None) == (self.csv is None):
            raise ValueError("give the data as either `rows` or `csv`")
        if self.estimator not in ESTIMATORS[self.task]:
            raise ValueError(
                f"estimator {self.estimator} does not do {self.task}: use one of {', '.join(ESTIMATORS[self.task])}"
            )
        if self.task != "anomaly" and self.target is None:
            raise ValueError(f"a {self.task} model needs a `target` column")
        self.params = PARAMS[self.estimator].model_validate(self.params).model_dump()
        return self


# --- The registry ---------------------------------------------------------------------------------------------------


class FeaturePublic(Schema):
    name: str
    type: Literal["number", "category"]
    categories: list[str] | None = Field(default=None, description="The values seen in training (categories only)")


class VersionPublic(Schema):
    version: int
    task: Task
    estimator: Estimator
    params: dict[str, Any]
    target: str | None
    features: list[FeaturePublic] = Field(description="The model's inputs, in order")
    classes: list[int | str] | None = Field(description="A classifier's classes, in probability order")
    metrics: dict[str, float | None] = Field(
        description="On the held-out rows: accuracy, f1_macro, roc_auc (classification); r2, mae, rmse "
        "(regression); anomaly_rate (anomaly). onnx_agreement: share of held-out predictions the ONNX artifact "
        "and the trained pipeline agree on"
    )
    library_versions: dict[str, str]
    sha256: str = Field(description="SHA-256 of the ONNX artifact; a mismatch refuses the version")
    artifact_bytes: int
    training_rows: int
    holdout_rows: int
    train_seconds: float
    job_id: str | None
    created_at: datetime


class ModelSummary(Schema):
    name: str
    task: Task
    latest_version: int | None = Field(description="The newest version that exists")
    aliases: dict[str, int] = Field(description="alias -> version")
    created_at: datetime
    updated_at: datetime


class ModelPublic(ModelSummary):
    versions: list[VersionPublic] = Field(description="Every version, newest first")


class ModelList(Schema):
    data: list[ModelSummary]
    next_cursor: str | None


class AliasMove(Schema):
    version: PositiveInt


class AliasPublic(Schema):
    name: str
    alias: str
    version: int


class NamePath(Schema):
    name: ModelName


class VersionPath(Schema):
    name: ModelName
    version: int = Field(ge=1, le=2**31 - 1, description="A version number")  # from the path: digits as text


class AliasPath(Schema):
    name: ModelName
    alias: Alias


class PredictIn(Schema):
    model_config = ConfigDict(
        ser_json_inf_nan="constants",
        json_schema_extra={
            "not": {
                "required": ["alias", "version"],
                "properties": {"alias": {"type": "string"}, "version": {"type": "integer"}},
            }
        },
    )

    rows: list[Row] = Field(
        min_length=1, max_length=MAX_PREDICT_ROWS, description="One object per row, keyed by feature name"
    )
    version: PositiveInt | None = Field(default=None, description="Serve this version")
    alias: Alias | None = Field(default=None, description="Serve the version this alias points at")

    @model_validator(mode="after")
    def _one_selector(self) -> PredictIn:
        if self.alias is not None and self.version is not None:
            raise ValueError("give either alias or version, not both (neither: `champion`, else the latest)")
        return self


class PredictOut(Schema):
    model: str
    version: int
    predictions: list[int | float | str] = Field(
        description="A class (classification), a number (regression), or -1 for an outlier and 1 otherwise"
    )
    classes: list[int | str] | None = Field(default=None, description="Column order of `probabilities`")
    probabilities: list[list[float]] | None = Field(default=None, description="Per row, one per class")
    scores: list[float] | None = Field(default=None, description="Anomaly: decision function, negative for outliers")


# --- Open Inference Protocol (KServe V2) ------------------------------------------------------------------------------

Datatype = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES"
]
TensorName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\x00]+$")]


class TensorMetadata(Schema):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1 for a dimension of any size")


class ServerMetadata(Schema):
    name: str
    version: str
    extensions: list[str]


class ServerLive(Schema):
    live: bool


class ServerReady(Schema):
    ready: bool


class ModelMetadata(Schema):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ModelReady(Schema):
    name: str
    version: str = Field(description="The version the name resolves to (without one: `champion`, else latest)")
    ready: bool


class InferInput(Schema):
    model_config = ConfigDict(
        extra="ignore", ser_json_inf_nan="constants"
    )  # clients send `parameters` (binary_data_size...): not used here

    name: TensorName
    shape: list[Annotated[int, Field(ge=0, le=MAX_TENSOR_ELEMENTS), json_integer]] = Field(min_length=1, max_length=2)
    datatype: Datatype
    data: list[Any] = Field(
        max_length=MAX_TENSOR_ELEMENTS, description="Row-major values, flat or nested as the shape says"
    )


class RequestedOutput(Schema):
    model_config = ConfigDict(extra="ignore")

    name: TensorName


class InferIn(Schema):
    model_config = ConfigDict(extra="ignore", ser_json_inf_nan="constants")

    id: Annotated[str, Field(max_length=256, pattern=r"^[^\x00]*$")] | None = None
    inputs: list[InferInput] = Field(
        min_length=1,
        max_length=MAX_FEATURES,
        description="One 2-D tensor [rows, features] in feature order (conventionally `input-0`; BYTES when the "
        "model has a categorical feature), or one tensor per feature named after it ([rows] or [rows, 1]; BYTES for "
        "a categorical feature)",
    )
    outputs: list[RequestedOutput] | None = Field(
        default=None, max_length=4, description="Outputs to return (default: all of `predict`, `predict_proba`...)"
    )


class InferOutput(Schema):
    name: str
    shape: list[int]
    datatype: str
    data: list[Any]


class InferOut(Schema):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[InferOutput]


class V2ModelPath(Schema):
    name: ModelName


class V2VersionPath(Schema):
    name: ModelName
    version: Annotated[str, Field(pattern=r"^[1-9][0-9]{0,8}$", description="A version number")]
