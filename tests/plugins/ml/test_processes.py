"""Two `faas serve` processes on loopback and one database: the first serves ml direct and trains (its in-process
worker runs the job); the second runs ml remote, pointing at the first. A model trained through the second is
served through both, by V2 and by the JSON API, with the same answers."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_KEY, INTERNAL_SECRET
from tests.plugins.ml.conftest import URL, iris_rows, without
from tests.test_two_process import Served, free_port


@pytest.fixture
def processes(database_url: str, tmp_path: Path) -> Iterator[tuple[Served, Served]]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("FAAS_") and k not in ("DATABASE_URL", "REDIS_URL")}
    base.update(
        DATABASE_URL=database_url,
        FAAS_PLUGINS="ml",
        FAAS_INTERNAL_SECRET=INTERNAL_SECRET,
        FAAS_ADMIN_KEY=ADMIN_KEY,
        FAAS_ACCESS_LOG="off",
        FAAS_DATA_DIR=str(tmp_path / "var"),
    )
    serving_port, front_port = free_port(), free_port()
    serving = Served(serving_port, base, tmp_path / "serving.log")
    front_env = {**base, "FAAS_ML_MODE": "remote", "FAAS_ML_URL": serving.url, "FAAS_JOBS_WORKER": "off"}
    front = Served(front_port, front_env, tmp_path / "front.log")
    try:
        serving.wait_ready()
        front.wait_ready()
        yield serving, front
    finally:
        front.stop()
        serving.stop()


@pytest.mark.slow
def test_a_model_trained_through_one_process_is_served_by_both(processes: tuple[Served, Served]) -> None:
    serving, front = processes
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}
    created = httpx.post(front.url + "/api/v1/admin/tenants", json={"name": "ml-two-proc"}, headers=admin).json()
    auth = {"authorization": f"Bearer {created['api_key']}"}
    rows = iris_rows()
    body = {"rows": rows, "target": "species", "task": "classification", "estimator": "gradient_boosting"}
    r = httpx.post(front.url + f"{URL}/iris/train", json=body, headers=auth, timeout=30)
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 60
    while True:
        job = httpx.get(front.url + f"/api/v1/jobs/{r.json()['id']}", headers=auth, timeout=10).json()
        if job["status"] != "queued" and job["status"] != "running":
            break
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    assert job["status"] == "succeeded", job

    features = without(rows, "species")
    tensor = {
        "name": "input-0",
        "shape": [len(rows), 4],
        "datatype": "FP64",
        "data": [[*row.values()] for row in features],
    }
    answers = []
    for base in (front.url, serving.url):
        v2 = httpx.post(base + "/v2/models/iris/infer", json={"inputs": [tensor]}, headers=auth, timeout=10)
        assert v2.status_code == 200, v2.text
        predictions = httpx.post(base + f"{URL}/iris/predict", json={"rows": features}, headers=auth, timeout=10)
        assert predictions.status_code == 200, predictions.text
        assert v2.json()["outputs"][0]["data"] == predictions.json()["predictions"]
        answers.append(predictions.json()["predictions"])
    assert answers[0] == answers[1]
    accuracy = sum(p == row["species"] for p, row in zip(answers[0], rows, strict=True)) / len(rows)
    assert accuracy >= 0.95
    # The front has no worker and no model of its own: it forwarded everything (its own V2 health included).
    assert httpx.get(front.url + "/v2/health/ready", timeout=5).json() == {"ready": True}
