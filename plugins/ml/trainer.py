"""The training process: `python -m plugins.ml.trainer` trains one model and exits.

A training job starts one per run (plugins/ml/jobs.py), so that scikit-learn's fitting and skl2onnx's conversion
(pure Python, seconds for a large forest) never hold the serving process's interpreter: measured in a thread, a
100-tree isolation forest delayed the event loop by 5 ms at the median and up to half a second. A process can also
be killed, so a run past its time limit or a cancelled job stops for real.

Protocol, no pickle: the job's payload as JSON on stdin; on stdout one line of JSON (the version's metadata with
`artifact_bytes`, or `{"error": ...}` for data that cannot train), then exactly that many bytes of ONNX artifact.
Anything the libraries print goes to stderr.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from app.errors import ServiceError


def _run(payload: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
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


def main() -> int:
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdout = sys.stderr  # whatever a library prints must not corrupt the reply
    payload = json.loads(sys.stdin.buffer.read())
    try:
        meta, artifact = _run(payload)
    except ServiceError as exc:  # the data or the conversion: the tenant reads this
        out.write(json.dumps({"error": exc.detail}).encode() + b"\n")
        out.flush()
        return 0
    out.write(json.dumps(meta, ensure_ascii=True).encode() + b"\n" + artifact)
    out.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
