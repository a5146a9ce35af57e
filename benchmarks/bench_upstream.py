"""A minimal OpenAI-compatible upstream for benchmarks: a fixed chat completion, as fast as uvicorn allows.

Run: python benchmarks/bench_upstream.py PORT  (listens on 127.0.0.1 only).
"""

from __future__ import annotations

import sys
from typing import Any

import orjson

BODY = orjson.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1,
        "model": "bench-upstream",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "pong"}, "finish_reason": "stop", "logprobs": None}
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10},
    }
)
MODELS = orjson.dumps({"object": "list", "data": [{"id": "bench-upstream", "object": "model", "owned_by": "bench"}]})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    body = MODELS if scope["path"].endswith("/models") else BODY
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
