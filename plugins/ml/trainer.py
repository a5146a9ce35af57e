"""The training process: `python -m plugins.ml.trainer` trains models, one request at a time, until it is idle.

The ml service keeps a few of these per server process (plugins/ml/trainers.py), so that scikit-learn's fitting and
skl2onnx's conversion (pure Python, seconds for a large forest) never hold the serving process's interpreter:
measured in a thread, a 100-tree isolation forest delayed the event loop by 5 ms at the median and up to half a
second. A process can also be killed, so a run past its time limit or a cancelled job stops for real. It stays up
between trainings (importing scikit-learn and skl2onnx takes 3-4 s) and exits after `IDLE_SECONDS` without work.

Protocol, no pickle: a request is one line holding the byte length of the payload, then the payload (the job's
JSON). The reply is one line of JSON (the version's metadata with `artifact_bytes`, or `{"error": ...}` for data
that cannot train), then exactly that many bytes of ONNX artifact. Anything the libraries print goes to stderr.
"""

from __future__ import annotations

import json
import os
import select
import sys
from typing import Any, BinaryIO

from app.errors import ServiceError

IDLE_SECONDS = 300.0


def train(payload: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    from plugins.ml import training
    from plugins.ml.data import Dataset

    trained = training.train(
        Dataset.decode(payload["data"]),
        task=payload["task"],
        estimator=payload["estimator"],
        params=payload["params"],
        test_size=payload["test_size"],
    )
    meta = {
        "features": trained.features,
        "classes": trained.classes,
        "metrics": trained.metrics,
        "library_versions": trained.library_versions,
        "sha256": trained.sha256,
        "training_rows": trained.training_rows,
        "holdout_rows": trained.holdout_rows,
        "train_seconds": trained.train_seconds,
        "artifact_bytes": len(trained.artifact),
    }
    return meta, trained.artifact


def serve(requests: BinaryIO, replies: BinaryIO, idle_seconds: float) -> None:
    while True:
        ready, _, _ = select.select([requests], [], [], idle_seconds)
        if not ready:
            return  # idle: give the memory back; the service starts another when a job comes
        line = requests.readline()
        if not line:
            return  # the service closed the pipe
        payload = json.loads(requests.read(int(line)))
        try:
            meta, artifact = train(payload)
        except ServiceError as exc:  # the data or the conversion: the tenant reads this
            meta, artifact = {"error": exc.detail, "artifact_bytes": 0}, b""
        replies.write(json.dumps(meta, ensure_ascii=True).encode() + b"\n" + artifact)
        replies.flush()


def main() -> int:
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdout = sys.stderr  # whatever a library prints must not corrupt a reply
    import plugins.ml.training  # noqa: F401  # the slow imports, before the first request rather than inside it

    serve(sys.stdin.buffer, replies, float(sys.argv[1]) if len(sys.argv) > 1 else IDLE_SECONDS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
