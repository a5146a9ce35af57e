"""The app's lifespan in tests, with start-up and shutdown limits a loaded two-core machine meets.

asgi-lifespan's default of 5 s was met on an idle machine and missed under load (every app that mounts a plugin
with job kinds also starts a job worker); a test is about what the app does, not about how fast a busy CI box
starts it. A start that hangs still fails, at 60 s.
"""

from __future__ import annotations

from typing import Any

from asgi_lifespan import LifespanManager

STARTUP_SECONDS = 60.0
SHUTDOWN_SECONDS = 60.0


def lifespan(app: Any) -> LifespanManager:
    return LifespanManager(app, startup_timeout=STARTUP_SECONDS, shutdown_timeout=SHUTDOWN_SECONDS)
