"""The ml tests deploy the ml plugin alone, direct and remote (the root conftest's `mode`); training jobs run on the
in-process worker of the deployment where ml runs direct. Data comes from the datasets scikit-learn ships (no
download): iris (classification) and diabetes (regression)."""

from __future__ import annotations

import csv
import io
from typing import Any

import httpx
import pytest

from tests.conftest import eventually

URL = "/api/v1/ml/models"


@pytest.fixture
def deploy_plugins() -> tuple[str, ...]:
    return ("ml",)


@pytest.fixture
def deploy_env() -> dict[str, str]:
    return {"FAAS_JOBS_SHUTDOWN_SECONDS": "1", "FAAS_JOBS_WORKER": "on"}


def iris_rows() -> list[dict[str, Any]]:
    from sklearn.datasets import load_iris

    data = load_iris()
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    return [
        {**dict(zip(names, map(float, x), strict=True)), "species": str(data.target_names[y])}
        for x, y in zip(data.data, data.target, strict=True)
    ]


def diabetes_csv() -> str:
    from sklearn.datasets import load_diabetes

    data = load_diabetes()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*data.feature_names, "progression"])
    for x, y in zip(data.data, data.target, strict=True):
        writer.writerow([*(repr(float(v)) for v in x), repr(float(y))])
    return out.getvalue()


def without(rows: list[dict[str, Any]], column: str) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != column} for r in rows]


async def train(api: httpx.AsyncClient, name: str, **body: Any) -> dict[str, Any]:
    """Train through the API and wait for the job; the finished job."""
    r = await api.post(f"{URL}/{name}/train", json=body)
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["kind"] == "ml.train" and job["status"] == "queued"
    return await finished(api, job["id"])


async def finished(api: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    async def check() -> dict[str, Any]:
        r = await api.get(f"/api/v1/jobs/{job_id}")
        assert r.status_code == 200, r.text
        job: dict[str, Any] = r.json()
        assert job["status"] in ("succeeded", "failed", "cancelled"), job
        return job

    return await eventually(check, within=60.0, interval=0.1)
