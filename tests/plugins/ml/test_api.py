"""The ml service over HTTP, direct and remote: train (a job), the registry, JSON predictions, aliases, deletes,
tenant isolation, a tampered artifact, and training data that is refused before any job is queued."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from app.db import plain_url
from tests.conftest import Deployer, eventually
from tests.harness import Deployment
from tests.plugins.ml.conftest import URL, diabetes_csv, finished, iris_rows, train, without

IRIS_FLOOR = 0.9  # holdout accuracy; the rows are easy (logistic regression and forests reach 0.93-0.97)
DIABETES_FLOOR = 0.3  # holdout R²; linear regression on this data is about 0.33-0.45 depending on the split


async def test_iris_trains_registers_and_predicts(api: httpx.AsyncClient) -> None:
    rows = iris_rows()
    job = await train(api, "iris", rows=rows, target="species", task="classification", estimator="random_forest")
    assert job["status"] == "succeeded", job
    assert job["result"]["model"] == "iris" and job["result"]["version"] == 1
    assert job["result"]["metrics"]["accuracy"] >= IRIS_FLOOR

    model = (await api.get(f"{URL}/iris")).json()
    assert model["task"] == "classification" and model["latest_version"] == 1 and model["aliases"] == {}
    [v1] = model["versions"]
    assert v1["estimator"] == "random_forest" and v1["params"]["n_estimators"] == 100
    assert v1["classes"] == ["setosa", "versicolor", "virginica"]
    assert [f["name"] for f in v1["features"]] == ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    assert all(f["type"] == "number" for f in v1["features"])
    assert v1["metrics"]["accuracy"] >= IRIS_FLOOR and v1["metrics"]["roc_auc"] >= IRIS_FLOOR
    assert v1["metrics"]["onnx_agreement"] == 1.0
    assert v1["training_rows"] + v1["holdout_rows"] == 150 and v1["holdout_rows"] == 30
    assert set(v1["library_versions"]) >= {"scikit-learn", "skl2onnx", "onnxruntime"}
    assert v1["sha256"] == job["result"]["sha256"] and len(v1["sha256"]) == 64 and v1["job_id"] == job["id"]

    r = await api.post(f"{URL}/iris/predict", json={"rows": without(rows, "species")})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model"] == "iris" and out["version"] == 1 and out["classes"] == v1["classes"]
    accuracy = sum(p == row["species"] for p, row in zip(out["predictions"], rows, strict=True)) / len(rows)
    assert accuracy >= 0.95  # on all rows, training rows included
    assert all(abs(sum(p) - 1) < 1e-4 for p in out["probabilities"]) and out["scores"] is None


async def test_diabetes_trains_from_csv(api: httpx.AsyncClient) -> None:
    text = diabetes_csv()
    job = await train(api, "diabetes", csv=text, target="progression", task="regression", estimator="linear_regression")
    assert job["status"] == "succeeded", job
    metrics = job["result"]["metrics"]
    assert metrics["r2"] >= DIABETES_FLOOR and 0 < metrics["mae"] < metrics["rmse"] < 80
    header, *lines = text.splitlines()
    rows = [dict(zip(header.split(","), map(float, line.split(",")), strict=True)) for line in lines[:5]]
    r = await api.post(f"{URL}/diabetes/predict", json={"rows": without(rows, "progression")})
    assert r.status_code == 200, r.text
    out = r.json()
    assert len(out["predictions"]) == 5 and all(25 < p < 350 for p in out["predictions"])
    assert out["classes"] is None and out["probabilities"] is None


async def test_categorical_features_and_an_unseen_category(api: httpx.AsyncClient) -> None:
    rows = [
        {"size": float(i % 7), "colour": ["red", "green", "blue"][i % 3], "label": "big" if i % 7 > 3 else "small"}
        for i in range(60)
    ]
    job = await train(api, "shapes", rows=rows, target="label", task="classification", estimator="logistic_regression")
    assert job["status"] == "succeeded", job
    model = (await api.get(f"{URL}/shapes")).json()
    assert model["versions"][0]["features"][1] == {
        "name": "colour",
        "type": "category",
        "categories": ["blue", "green", "red"],
    }
    r = await api.post(
        f"{URL}/shapes/predict", json={"rows": [{"size": 6.0, "colour": "red"}, {"size": 0.0, "colour": "purple"}]}
    )
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == ["big", "small"]


async def test_anomaly_flags_outliers(api: httpx.AsyncClient) -> None:
    import numpy as np

    points = np.random.default_rng(0).normal(size=(200, 2))
    rows = [{"a": float(a), "b": float(b)} for a, b in points]
    job = await train(
        api, "outliers", rows=rows, task="anomaly", estimator="isolation_forest", params={"n_estimators": 20}
    )
    assert job["status"] == "succeeded", job
    assert 0 <= job["result"]["metrics"]["anomaly_rate"] < 0.5
    r = await api.post(f"{URL}/outliers/predict", json={"rows": [{"a": 0.1, "b": -0.1}, {"a": 9.0, "b": -9.0}]})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["predictions"] == [1, -1] and out["scores"][1] < 0 < out["scores"][0]


async def test_versions_aliases_and_deletes(api: httpx.AsyncClient) -> None:
    rows = iris_rows()
    body = {"rows": rows, "target": "species", "task": "classification"}
    assert (await train(api, "iris", estimator="logistic_regression", **body))["result"]["version"] == 1
    assert (await train(api, "iris", estimator="gradient_boosting", **body))["result"]["version"] == 2
    one = {"rows": without(rows[:1], "species")}

    async def served(**selector: Any) -> int:
        r = await api.post(f"{URL}/iris/predict", json={**one, **selector})
        assert r.status_code == 200, r.text
        version: int = r.json()["version"]
        return version

    assert await served() == 2  # no champion: the latest
    r = await api.put(f"{URL}/iris/aliases/champion", json={"version": 1})
    assert r.status_code == 200 and r.json() == {"name": "iris", "alias": "champion", "version": 1}
    assert await served() == 1 and await served(version=2) == 2 and await served(alias="champion") == 1
    assert (await api.put(f"{URL}/iris/aliases/champion", json={"version": 9})).status_code == 404
    r = await api.post(f"{URL}/iris/predict", json={**one, "alias": "nope"})
    assert r.status_code == 404 and "no alias" in r.json()["detail"]
    r = await api.post(f"{URL}/iris/predict", json={**one, "alias": "champion", "version": 1})
    assert r.status_code == 422

    # A different task under the same name is refused before a job is queued.
    r = await api.post(
        f"{URL}/iris/train",
        json={"rows": without(rows, "species"), "target": "petal_width", "task": "regression", "estimator": "ridge"},
    )
    assert r.status_code == 409 and "classification" in r.json()["detail"]

    assert (await api.delete(f"{URL}/iris/versions/1")).status_code == 204
    model = (await api.get(f"{URL}/iris")).json()
    assert [v["version"] for v in model["versions"]] == [2] and model["aliases"] == {}  # the alias went with it
    assert await served() == 2
    r = await api.post(f"{URL}/iris/predict", json={**one, "version": 1})
    assert r.status_code == 404
    assert (await api.delete(f"{URL}/iris/versions/1")).status_code == 404

    listed = (await api.get(URL)).json()
    assert [m["name"] for m in listed["data"]] == ["iris"] and listed["data"][0]["latest_version"] == 2
    assert (await api.delete(f"{URL}/iris")).status_code == 204
    assert (await api.get(f"{URL}/iris")).status_code == 404
    assert (await api.post(f"{URL}/iris/predict", json=one)).status_code == 404
    assert (await api.get(URL)).json()["data"] == []


async def test_another_tenants_model_is_not_found(deployment: Deployment) -> None:
    _, owner = await deployment.api()
    _, other = await deployment.api()
    rows = iris_rows()
    body = {"rows": rows, "target": "species", "task": "classification", "estimator": "logistic_regression"}
    assert (await train(owner, "iris", **body))["status"] == "succeeded"
    one = without(rows[:1], "species")
    tensor = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": list(one[0].values())}]}
    assert (await owner.post("/v2/models/iris/infer", json=tensor)).status_code == 200
    for r in (
        await other.get(f"{URL}/iris"),
        await other.post(f"{URL}/iris/predict", json={"rows": one}),
        await other.put(f"{URL}/iris/aliases/champion", json={"version": 1}),
        await other.delete(f"{URL}/iris/versions/1"),
        await other.delete(f"{URL}/iris"),
        await other.get("/v2/models/iris"),
        await other.get("/v2/models/iris/versions/1"),
        await other.get("/v2/models/iris/ready"),
        await other.post("/v2/models/iris/infer", json=tensor),
        await other.post("/v2/models/iris/versions/1/infer", json=tensor),
    ):
        assert r.status_code == 404, (r.request.url, r.text)
    assert (await other.get(URL)).json()["data"] == []
    # The same name is free for the other tenant, and its model is its own.
    body["estimator"] = "random_forest"
    assert (await train(other, "iris", **body))["result"]["version"] == 1
    owned = (await owner.get(f"{URL}/iris")).json()["versions"]
    assert [v["estimator"] for v in owned] == ["logistic_regression"]
    assert (await owner.post("/v2/models/iris/infer", json=tensor)).status_code == 200


async def test_a_tampered_artifact_is_refused(api: httpx.AsyncClient, database_url: str) -> None:
    rows = iris_rows()
    job = await train(api, "iris", rows=rows, target="species", task="classification", estimator="logistic_regression")
    assert job["status"] == "succeeded", job
    conn = await asyncpg.connect(plain_url(database_url))
    try:
        artifact = await conn.fetchval("SELECT artifact FROM ml_versions WHERE job_id = $1", job["id"])
        assert hashlib.sha256(artifact).hexdigest() == job["result"]["sha256"]
        with pytest.raises(asyncpg.PostgresError, match="immutable"):
            await conn.execute("UPDATE ml_versions SET artifact = $1 WHERE job_id = $2", artifact + b"\0", job["id"])
        # Tampering below the application (the trigger bypassed, as by someone with the storage in hand).
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            tampered = artifact.replace(b"setosa", b"setoso")
            assert tampered != artifact
            await conn.execute("UPDATE ml_versions SET artifact = $1 WHERE job_id = $2", tampered, job["id"])
    finally:
        await conn.close()
    r = await api.post(f"{URL}/iris/predict", json={"rows": without(rows[:1], "species")})
    assert r.status_code == 409, r.text
    assert r.json()["type"] == "urn:faas:problem:artifact-refused" and "SHA-256" in r.json()["detail"]
    r = await api.get("/v2/models/iris/ready")
    assert r.status_code == 409 and "SHA-256" in r.json()["error"]


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"target": "nope"}, 422, "not a column"),
        ({"rows": [{"a": 1.0, "y": "p"}] * 5}, 422, "at least 10 rows"),
        ({"rows": [{"a": 1.0 if i else "x", "y": str(i % 2)} for i in range(20)]}, 422, "mixes numbers and text"),
        ({"rows": [{"a": float(i), "y": "one"} for i in range(20)]}, 422, "single class"),
        ({"rows": [{"a": float(i), **({"y": str(i % 2)} if i < 19 else {})} for i in range(20)]}, 422, "missing ['y']"),
        ({"csv": "a,y\n" + "1,p\n,q\n" * 6}, 422, "missing"),
        ({"rows": [{"a": 10**400 if i == 3 else float(i), "y": str(i % 2)} for i in range(12)]}, 422, "not a finite"),
        ({"csv": "a,y\n" + "1,2,3\n" * 12}, 422, "has 3 fields"),
        ({"estimator": "ridge"}, 422, "does not do classification"),
        ({"params": {"n_estimators": 5}}, 422, "n_estimators"),
        ({"params": {"C": -1}}, 422, "C"),
        ({"task": "regression", "estimator": "ridge"}, 422, "must be numbers"),
        ({"rows": [{"a": 1.0, "y": "p"}] * 21}, 413, "at most 20 rows"),
        ({"csv": "a,y\n" + "1,p\n2,q\n" * 11}, 413, "at most 20 rows"),
    ],
)
async def test_training_data_that_cannot_train_is_refused_with_the_reason(
    deploy_app: Deployer, body: dict[str, Any], status: int, words: str
) -> None:
    async with deploy_app(env={"FAAS_ML_MAX_TRAIN_ROWS": "20"}) as d:
        _, api = await d.api()
        rows = [{"a": float(i), "y": "p" if i % 2 else "q"} for i in range(12)]
        request = {"rows": rows, "target": "y", "task": "classification", "estimator": "logistic_regression", **body}
        if "csv" in body:
            request.pop("rows")
        r = await api.post(f"{URL}/m/train", json=request)
        assert r.status_code == status, r.text
        assert words in r.text
        jobs = (await api.get("/api/v1/jobs")).json()["data"]
        assert jobs == []  # nothing was queued
        if status == 413:
            assert r.json()["limit"] == 20


async def test_a_training_that_cannot_register_fails_with_the_reason(api: httpx.AsyncClient) -> None:
    # Two trainings of one new name with different tasks both pass the request's checks (no model yet); the one
    # that registers second finds the name taken by the other task, and its job fails saying so.
    rows = [{"a": float(i), "b": float(i % 3), "y": float(i % 2)} for i in range(40)]
    common = {"rows": rows, "target": "y"}
    started = [
        await api.post(f"{URL}/m/train", json={**common, "task": "classification", "estimator": "random_forest"}),
        await api.post(f"{URL}/m/train", json={**common, "task": "regression", "estimator": "random_forest"}),
    ]
    assert [r.status_code for r in started] == [202, 202]
    jobs = [await finished(api, r.json()["id"]) for r in started]
    assert sorted(j["status"] for j in jobs) == ["failed", "succeeded"], jobs
    failed = next(j for j in jobs if j["status"] == "failed")
    assert "under another name" in failed["error"] and failed["result"] is None
    model = (await api.get(f"{URL}/m")).json()
    assert len(model["versions"]) == 1


def trainer_processes() -> list[int]:
    """Training processes (`python -m plugins.ml.trainer`) alive now, whatever started them, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if b"plugins.ml.trainer" in (entry / "cmdline").read_bytes():
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append(int(entry.name))
        except OSError:
            continue  # gone meanwhile
    return found


SLOW = {"task": "anomaly", "estimator": "isolation_forest", "params": {"n_estimators": 500}}


async def test_a_training_past_its_time_limit_is_stopped(deploy_app: Deployer) -> None:
    async with deploy_app(env={"FAAS_ML_TRAIN_TIMEOUT_SECONDS": "1"}) as d:
        _, api = await d.api()
        job = await train(api, "slow", csv=diabetes_csv(), **SLOW)
        assert job["status"] == "failed" and "took longer than 1 s and was stopped" in job["error"], job
        assert (await api.get(f"{URL}/slow")).status_code == 404  # nothing registered


async def test_cancelling_a_training_stops_its_process(api: httpx.AsyncClient) -> None:
    before = set(trainer_processes())
    r = await api.post(f"{URL}/slow/train", json={"csv": diabetes_csv(), **SLOW})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]

    async def training() -> set[int]:
        running = set(trainer_processes()) - before
        assert running
        return running

    started = await eventually(training, within=30)
    r = await api.post(f"/api/v1/jobs/{job_id}/cancel")
    assert r.status_code == 202, r.text
    job = await finished(api, job_id)
    assert job["status"] == "cancelled", job

    async def stopped() -> None:
        assert not started & set(trainer_processes())

    await eventually(stopped, within=10)
    assert (await api.get(f"{URL}/slow")).status_code == 404


async def test_trainings_reuse_a_warm_training_process(api: httpx.AsyncClient) -> None:
    before = set(trainer_processes())
    rows = [{"a": float(i), "y": float(2 * i)} for i in range(20)]
    body = {"rows": rows, "target": "y", "task": "regression", "estimator": "linear_regression"}
    assert (await train(api, "line", **body))["status"] == "succeeded"
    first = set(trainer_processes()) - before
    assert len(first) == 1  # one process trained, and waits for the next job
    assert (await train(api, "line", **body))["result"]["version"] == 2
    assert set(trainer_processes()) - before == first
