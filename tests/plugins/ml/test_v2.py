"""The Open Inference Protocol (KServe V2) REST routes, direct and remote, over a real loopback socket: health,
server and model metadata, readiness, inference from one 2-D tensor or one tensor per feature (with versions), the
same answers as the JSON API, and bad tensors refused with 400 and the reason."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.harness import Served
from tests.plugins.ml.conftest import URL, iris_rows, train, without

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@pytest.fixture
def deploy_served() -> Served:
    return "loop"  # the front on a real socket; in remote mode it calls the serving deployment over another


@pytest.fixture
async def iris(api: httpx.AsyncClient) -> list[dict[str, Any]]:
    """The iris rows, after training model `iris` version 1 (logistic regression) on them."""
    rows = iris_rows()
    job = await train(api, "iris", rows=rows, target="species", task="classification", estimator="logistic_regression")
    assert job["status"] == "succeeded", job
    return rows


async def post_json(api: httpx.AsyncClient, path: str, body: dict[str, Any]) -> httpx.Response:
    """POST `body` as JSON that may hold NaN and Infinity (which Python's encoder writes and httpx's refuses)."""
    return await api.post(path, content=json.dumps(body), headers={"content-type": "application/json"})


def matrix(rows: list[dict[str, Any]], name: str = "input-0", datatype: str = "FP32") -> dict[str, Any]:
    data = [row[f] for row in rows for f in FEATURES]
    return {"name": name, "shape": [len(rows), len(FEATURES)], "datatype": datatype, "data": data}


async def infer(api: httpx.AsyncClient, body: dict[str, Any], path: str = "/v2/models/iris") -> dict[str, Any]:
    r = await api.post(f"{path}/infer", json=body)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


async def test_health_and_server_metadata_need_no_key(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v2/health/live")).json() == {"live": True}
    r = await client.get("/v2/health/ready")
    assert r.status_code == 200 and r.json() == {"ready": True}
    meta = (await client.get("/v2")).json()
    assert meta["name"] == "motadata-faas-ml" and meta["version"] and meta["extensions"] == []
    r = await client.get("/v2/models/iris")
    assert r.status_code == 401 and r.json()["error"].startswith("an API key is required")


async def test_model_metadata_and_readiness(api: httpx.AsyncClient, iris: list[dict[str, Any]]) -> None:
    meta = (await api.get("/v2/models/iris")).json()
    assert meta["name"] == "iris" and meta["versions"] == ["1"] and meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": f, "datatype": "FP32", "shape": [-1, 1]} for f in FEATURES]
    assert meta["outputs"] == [
        {"name": "predict", "datatype": "BYTES", "shape": [-1]},
        {"name": "predict_proba", "datatype": "FP32", "shape": [-1, 3]},
    ]
    assert (await api.get("/v2/models/iris/versions/1")).json() == meta
    assert (await api.get("/v2/models/iris/ready")).json() == {"name": "iris", "version": "1", "ready": True}
    assert (await api.get("/v2/models/iris/versions/1/ready")).status_code == 200
    for path in ("/v2/models/iris/versions/2", "/v2/models/iris/versions/2/ready", "/v2/models/nope/ready"):
        r = await api.get(path)
        assert r.status_code == 404 and r.json()["error"], path


async def test_infer_agrees_with_the_json_api_in_every_input_form(
    api: httpx.AsyncClient, iris: list[dict[str, Any]]
) -> None:
    features = without(iris, "species")
    expected = (await api.post(f"{URL}/iris/predict", json={"rows": features})).json()

    out = await infer(api, {"id": "req-1", "inputs": [matrix(iris)]})
    assert out["model_name"] == "iris" and out["model_version"] == "1" and out["id"] == "req-1"
    predict, proba = out["outputs"]
    assert predict == {"name": "predict", "shape": [150], "datatype": "BYTES", "data": expected["predictions"]}
    assert proba["name"] == "predict_proba" and proba["shape"] == [150, 3] and proba["datatype"] == "FP32"
    flat = [p for row in expected["probabilities"] for p in row]
    assert proba["data"] == pytest.approx(flat, abs=1e-6)
    accuracy = sum(p == r["species"] for p, r in zip(predict["data"], iris, strict=True)) / 150
    assert accuracy >= 0.95

    # Nested data, FP64, the versioned path, and only the output asked for.
    nested = matrix(iris[:3], datatype="FP64")
    nested["data"] = [[r[f] for f in FEATURES] for r in iris[:3]]
    one = await infer(api, {"inputs": [nested], "outputs": [{"name": "predict"}]}, path="/v2/models/iris/versions/1")
    assert [o["name"] for o in one["outputs"]] == ["predict"]
    assert one["outputs"][0]["data"] == expected["predictions"][:3]

    # One tensor per feature, named after it ([rows] or [rows, 1]), in any order; integers are numbers too.
    tensors = [
        {"name": f, "shape": [3] if i % 2 else [3, 1], "datatype": "FP32", "data": [r[f] for r in iris[:3]]}
        for i, f in enumerate(FEATURES)
    ]
    per_feature = await infer(api, {"inputs": list(reversed(tensors))})
    assert per_feature["outputs"][0]["data"] == expected["predictions"][:3]
    ints = {"name": "input-0", "shape": [1, 4], "datatype": "INT32", "data": [6, 3, 5, 2]}
    assert (await infer(api, {"inputs": [ints]}))["outputs"][0]["data"] == ["virginica"]


async def test_the_champion_is_served_without_a_version(api: httpx.AsyncClient, iris: list[dict[str, Any]]) -> None:
    job = await train(api, "iris", rows=iris, target="species", task="classification", estimator="random_forest")
    assert job["result"]["version"] == 2
    body = {"inputs": [matrix(iris[:1])]}
    assert (await infer(api, body))["model_version"] == "2"
    assert (await api.put(f"{URL}/iris/aliases/champion", json={"version": 1})).status_code == 200
    assert (await infer(api, body))["model_version"] == "1"
    assert (await infer(api, body, path="/v2/models/iris/versions/2"))["model_version"] == "2"
    assert (await api.get("/v2/models/iris")).json()["versions"] == ["2", "1"]


def _per_feature(**override: Any) -> list[dict[str, Any]]:
    tensors = [{"name": f, "shape": [1], "datatype": "FP32", "data": [1.0]} for f in FEATURES]
    tensors[0].update(override)
    return tensors


# (inputs, words the 400's reason must hold)
BAD_TENSORS: list[tuple[list[dict[str, Any]], str]] = [
    ([{"name": "input-0", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}], "the model takes [rows, 4]"),
    ([{"name": "input-0", "shape": [2, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}], "has 4 values"),
    ([{"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, "x", 4]}], "'x' is not a number"),
    ([{"name": "input-0", "shape": [1, 4], "datatype": "BYTES", "data": ["1", "2", "x", "4"]}], "not a number"),
    ([{"name": "input-0", "shape": [1, 4], "datatype": "INT32", "data": [1, 2, 3.5, 4]}], "not an integer"),
    ([{"name": "input-0", "shape": [1, 4], "datatype": "UINT8", "data": [1, 2, -3, 4]}], "negative"),
    ([{"name": "input-0", "shape": [1, 4], "datatype": "BOOL", "data": [True] * 4}], "datatype BOOL"),
    ([{"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, float("nan"), 4]}], "finite"),
    ([{"name": "input-0", "shape": [0, 4], "datatype": "FP32", "data": []}], "no rows"),
    ([{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 10**400, 4]}], "too large"),
    ([{"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": [[[1, 2, 3, 4]]]}], "nests deeper"),
    (_per_feature(name="petal_size"), "unknown input 'petal_size'"),
    (_per_feature()[1:], "missing input 'sepal_length'"),
    ([*_per_feature()[:3], {"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}], "unknown input 'x'"),
    (_per_feature(shape=[2], data=[1.0, 2.0]), "'sepal_width' has a first dimension of 1, the inputs before it 2"),
    (_per_feature(shape=[1, 2], data=[1.0, 2.0]), "one feature is [rows] or [rows, 1]"),
    (_per_feature(datatype="BYTES", data=["a"]), "'a' is not a number"),
    (_per_feature() + _per_feature()[:1], "named twice"),
]


async def test_bad_tensors_are_400_with_the_reason(api: httpx.AsyncClient, iris: list[dict[str, Any]]) -> None:
    for inputs, words in BAD_TENSORS:
        r = await post_json(api, "/v2/models/iris/infer", {"inputs": inputs})
        assert r.status_code == 400, (words, r.text)
        assert words in r.json()["error"] and r.json()["detail"] == r.json()["error"], (words, r.text)
        assert r.json()["type"] == "urn:faas:problem:bad-tensor"


async def test_limits_and_unknown_outputs(api: httpx.AsyncClient, iris: list[dict[str, Any]]) -> None:
    body = {"inputs": [matrix(iris[:1])], "outputs": [{"name": "probabilities"}]}
    r = await api.post("/v2/models/iris/infer", json=body)
    assert r.status_code == 400 and "unknown output 'probabilities'" in r.json()["error"]
    rows = 10_001
    big = {"name": "input-0", "shape": [rows, 4], "datatype": "FP32", "data": [1.0] * (rows * 4)}
    r = await api.post("/v2/models/iris/infer", json={"inputs": [big]})
    assert r.status_code == 413 and r.json()["limit"] == 10_000, r.text
    r = await api.post("/v2/models/iris/infer", json={"inputs": [{"name": "a", "shape": [1], "datatype": "FP9"}]})
    assert r.status_code == 422 and r.json()["error"] == "the request body failed validation"


BAD_ROWS: list[tuple[list[dict[str, Any]], str]] = [
    ([{"sepal_length": 1.0}], "missing ['petal_length', 'petal_width', 'sepal_width']"),
    ([{**dict.fromkeys(FEATURES, 1.0), "colour": "red"}], "unknown ['colour']"),
    ([{**dict.fromkeys(FEATURES, 1.0), "petal_width": "wide"}], "'wide' is not a number"),
    ([dict.fromkeys(FEATURES, float("inf"))], "finite"),
    ([dict.fromkeys(FEATURES, 10**400)], "too large"),
]


async def test_json_rows_that_do_not_fit_are_400(api: httpx.AsyncClient, iris: list[dict[str, Any]]) -> None:
    for rows, words in BAD_ROWS:
        r = await post_json(api, f"{URL}/iris/predict", {"rows": rows})
        assert r.status_code == 400, (words, r.text)
        assert words in r.json()["detail"], (words, r.text)
