"""ML: training time on the datasets scikit-learn ships, and prediction latency through the Open Inference Protocol
(V2) and the JSON API next to scikit-learn's own `predict` on the same model.

A `faas serve` process (ml only, its in-process job worker on) on an embedded PostgreSQL; one client on loopback,
one request at a time (keep-alive). Training: each estimator through the API, from the POST to the job's success
(queue, training in a warm training process, ONNX conversion, the agreement check, registration), beside the job's own
`train_seconds`. Latency: a 100-tree random forest on iris, 1 row and 1,000 rows, V2 and JSON over HTTP, then in
this process scikit-learn's `predict` on the very same model (trained again with the same data, split and seed:
its predictions are checked equal to the server's) and onnxruntime on its artifact.

    .venv/bin/python benchmarks/ml_bench.py [--n 300]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import migrations
from benchmarks._app import ADMIN_KEY, embedded_server, fresh_database, percentiles
from plugins.ml.data import dataset
from tests.plugins.ml.conftest import diabetes_csv, iris_rows, without

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
TRAININGS = [
    ("iris", "classification", "logistic_regression"),
    ("iris", "classification", "random_forest"),
    ("iris", "classification", "gradient_boosting"),
    ("diabetes", "regression", "linear_regression"),
    ("diabetes", "regression", "ridge"),
    ("diabetes", "regression", "random_forest"),
    ("diabetes", "regression", "gradient_boosting"),
    ("diabetes", "anomaly", "isolation_forest"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(database_url: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "FAAS_PLUGINS": "ml",
        "FAAS_ADMIN_KEY": ADMIN_KEY,
        "FAAS_ACCESS_LOG": "off",
        "FAAS_LOG_LEVEL": "warning",
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url + "/health/ready", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"faas serve did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def interleaved(n: int, calls: dict[str, Callable[[], Any]]) -> dict[str, list[float]]:
    """Each call's latencies over `n` rounds of one call each, taken in turn, so that a burst of load from
    elsewhere on the machine falls on all of them alike."""
    for call in calls.values():
        for _ in range(min(20, n)):  # warm-up: the first call loads the model
            call()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(n):
        for name, call in calls.items():
            t0 = time.perf_counter()
            call()
            samples[name].append(time.perf_counter() - t0)
    return samples


def train(c: httpx.Client, name: str, body: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    t0 = time.perf_counter()
    r = c.post(f"/api/v1/ml/models/{name}/train", json=body)
    r.raise_for_status()
    while True:
        job = c.get(f"/api/v1/jobs/{r.json()['id']}").json()
        if job["status"] not in ("queued", "running"):
            break
        time.sleep(0.02)
    if job["status"] != "succeeded":
        raise SystemExit(f"training {name} failed: {job['error']}")
    return time.perf_counter() - t0, job["result"]


def bench(n: int) -> None:
    iris = iris_rows()
    diabetes = diabetes_csv()
    data: dict[str, dict[str, Any]] = {
        "iris": {"rows": iris, "target": "species"},
        "diabetes": {"csv": diabetes, "target": "progression"},
    }
    with embedded_server() as server_url, tempfile.TemporaryDirectory() as tmp:
        url = asyncio.run(fresh_database(server_url))
        migrations.upgrade(url)
        proc, base = serve(url, Path(tmp) / "serve.log")
        try:
            admin = httpx.post(
                base + "/api/v1/admin/tenants",
                json={"name": "ml-bench"},
                headers={"authorization": f"Bearer {ADMIN_KEY}"},
            ).json()
            with httpx.Client(base_url=base, headers={"authorization": f"Bearer {admin['api_key']}"}, timeout=120) as c:
                print("training through the API (POST to job succeeded; the job's own train_seconds in brackets)")
                for source, task, estimator in TRAININGS:
                    name = f"{source}-{task}-{estimator}".replace("_", "-")
                    seconds, result = train(c, name, {**data[source], "task": task, "estimator": estimator})
                    metrics = {k: round(v, 3) for k, v in result["metrics"].items() if v is not None}
                    print(
                        f"  {source:8s} {estimator:20s} {seconds:6.2f} s  [{result['train_seconds']:.2f} s]  {metrics}"
                    )
                latency(c, iris, n)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)


def _dataset(rows: list[dict[str, Any]]) -> Any:
    return dataset(rows=rows, csv_text=None, target="species", task="classification", max_rows=10**5, max_cells=10**6)


def latency(c: httpx.Client, iris: list[dict[str, Any]], n: int) -> None:
    import onnxruntime as ort

    from plugins.ml import training

    name = "iris-classification-random-forest"  # trained above: 100 trees, seed 0
    rng = np.random.default_rng(0)
    thousand = [iris[i] for i in rng.integers(0, len(iris), 1000)]
    params = {"n_estimators": 100, "max_depth": None, "min_samples_leaf": 1, "random_state": 0}
    local = training.train(
        _dataset(iris), task="classification", estimator="random_forest", params=params, test_size=0.2
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(local.artifact, sess_options=options, providers=["CPUExecutionProvider"])
    print(f"\nprediction latency, {name} (100 trees), one client on loopback, the four paths measured in turn")
    for rows in (thousand[:1], thousand):
        measure(c, name, rows, local, session, n if len(rows) == 1 else max(20, n // 3))


def measure(c: httpx.Client, name: str, rows: list[dict[str, Any]], local: Any, session: Any, count: int) -> None:
    from plugins.ml import training

    features = without(rows, "species")
    tensor = {
        "name": "input-0",
        "shape": [len(rows), 4],
        "datatype": "FP32",
        "data": [row[f] for row in rows for f in FEATURES],
    }
    v2_body = {"inputs": [tensor]}
    x = np.array([[row[f] for f in FEATURES] for row in rows], dtype=object)
    served = c.post(f"/v2/models/{name}/infer", json=v2_body).json()["outputs"][0]["data"]
    assert served == local.pipeline.predict(x).tolist(), "the in-process model is not the served one"
    feeds = training.onnx_feeds(_dataset(iris_rows()), x)

    def v2() -> None:
        r = c.post(f"/v2/models/{name}/infer", json=v2_body)
        assert r.status_code == 200

    def json_api() -> None:
        r = c.post(f"/api/v1/ml/models/{name}/predict", json={"rows": features})
        assert r.status_code == 200

    label = f"{len(rows):>4} row{'s' if len(rows) > 1 else ' '}"
    samples = interleaved(
        count,
        {
            "V2 infer (HTTP)          ": v2,
            "JSON predict (HTTP)      ": json_api,
            "scikit-learn predict     ": lambda: local.pipeline.predict(x),
            "onnxruntime run (in-proc)": lambda: session.run(None, feeds),
        },
    )
    for what, taken in samples.items():
        print(f"  {label}  {what}  {percentiles(taken)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="single-row requests per measurement (1,000 rows: n/3)")
    args = parser.parse_args()
    bench(args.n)
