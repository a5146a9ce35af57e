"""The ml plugin's settings (`FAAS_ML_*`): `faas config` lists them with their defaults."""

from __future__ import annotations

from pydantic import Field

from app.config import SettingsGroup
from plugins.ml.schemas import MAX_TRAIN_ROWS


class MlConfig(SettingsGroup):
    group = "ml"

    loaded_models: int = Field(
        default=32, ge=1, le=10_000, description="Model versions one replica keeps loaded (least recently used go)"
    )
    max_train_rows: int = Field(
        default=MAX_TRAIN_ROWS, ge=10, le=MAX_TRAIN_ROWS, description="Rows one training request may carry (413)"
    )
    max_train_values: int = Field(
        default=1_000_000,
        ge=100,
        le=20_000_000,
        description="Values (rows x columns) one training request may carry (413): bounds a training run's time",
    )
    train_timeout_seconds: float = Field(
        default=900.0,
        ge=1.0,
        le=86_400.0,
        description="Time one training run may take; past it its process is killed and the job fails",
    )
    trainers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Training processes per server process, each on one core; more trainings wait for one",
    )
