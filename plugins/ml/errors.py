"""Errors of the ml plugin, each a `ServiceError` with its own stable problem `type`.

They subclass the foundation's classes, so a remote caller rebuilds the same class from the problem JSON.
"""

from __future__ import annotations

from app.errors import Conflict, InvalidInput, MalformedRequest, UpstreamFailed


class BadTensor(MalformedRequest):
    """The inputs do not fit the model: a missing, unknown or misshapen input, a wrong datatype, a value that is
    not a finite number where one is needed (400, with the reason)."""

    slug, title = "bad-tensor", "Inputs do not fit the model"


class ArtifactRefused(Conflict):
    """The stored artifact's SHA-256 is not the one recorded when it was trained: it is never loaded (409)."""

    slug, title = "artifact-refused", "Model artifact refused"


class ConversionFailed(InvalidInput):
    """The trained pipeline could not become a trustworthy ONNX artifact (a training job fails with this)."""

    slug, title = "conversion-failed", "Model conversion failed"


class TrainingFailed(UpstreamFailed):
    """A training run stopped: past its time limit, or its process failed (a training job fails with this).

    A subclass of an existing class, so that an unknown problem with its status still maps to the general class."""

    slug, title = "training-failed", "Training failed"
