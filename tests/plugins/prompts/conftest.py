"""The prompts tests deploy the prompts plugin alone, direct and remote (the root conftest's `mode`)."""

from __future__ import annotations

import pytest


@pytest.fixture
def deploy_plugins() -> tuple[str, ...]:
    return ("prompts",)
