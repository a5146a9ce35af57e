"""The core's own tests run direct unless a module asks for both modes (it overrides `mode` with params)."""

from __future__ import annotations

import pytest

from tests.harness import Mode


@pytest.fixture
def mode() -> Mode:
    return "direct"
