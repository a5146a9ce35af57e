"""Prompt render throughput and latency for the simple `{{var}}` syntax and for sandboxed Jinja2.

The renderer alone (a simple template on the event loop, Jinja2 in a worker process), then through the service
(what the agents plugin calls) and through HTTP in-process, one render at a time, and through the service with
`--concurrency` renders in flight; on an embedded PostgreSQL (each render resolves the label in the database).

    .venv/bin/python benchmarks/prompts_bench.py [--n 2000] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._app import client, embedded_server, fresh_database, percentiles, running_app
from plugins.prompts.interface import PROMPTS

TEMPLATES = {
    "simple": ("Hello {{name}}, you are {{age}} years old. Today: {{topic}}. " * 4, "simple"),
    "jinja2": (
        "Hello {{ name | title }}, you are {{ age }}.{% for t in tags %} #{{ t }}{% endfor %}"
        "{% if age > 30 %} (senior){% endif %} Today: {{ topic }}.",
        "jinja2",
    ),
}
VARIABLES = {
    "simple": {"name": "ada", "age": 36, "topic": "engines"},
    "jinja2": {"name": "ada", "age": 36, "topic": "engines", "tags": ["math", "poetry", "engines"]},
}


async def timed(n: int, call: Callable[[], Awaitable[Any]]) -> tuple[float, list[float]]:
    """Renders per second over `n` sequential calls, and each call's latency."""
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - t0)
    return n / sum(samples), samples


async def engine_only(n: int) -> None:
    """The renderer alone (no database): what the per-render cost is made of."""
    from plugins.prompts.config import PromptsConfig
    from plugins.prompts.renderer import PromptRenderer

    renderer = PromptRenderer(PromptsConfig())
    try:
        for name, (template, syntax) in TEMPLATES.items():
            names = await renderer.compile(type="text", syntax=syntax, template=template)  # starts a worker (jinja2)

            async def render(
                name: str = name, template: str = template, syntax: str = syntax, names: list[str] = names
            ) -> Any:
                return await renderer.render(
                    key=("bench", name, 1),
                    type="text",
                    syntax=syntax,
                    template=template,
                    variables=names,
                    values=VARIABLES[name],
                    strict=True,
                )

            rate, samples = await timed(n, render)
            print(f"{name:7s} engine  {rate:8.0f} renders/s  {percentiles(samples)}  (no database)")
    finally:
        await renderer.aclose()


async def main(n: int, concurrency: int) -> None:
    from plugins.prompts import plugin

    await engine_only(n)

    with embedded_server() as server_url:
        url = await fresh_database(server_url)
        async with running_app(url, [plugin]) as (app, state, tenant):
            prompts = state["services"].get(PROMPTS)
            async with client(app, tenant["api_key"]) as c:
                for name, (template, syntax) in TEMPLATES.items():
                    r = await c.post("/api/v1/prompts", json={"name": name, "template": template, "syntax": syntax})
                    r.raise_for_status()
                for name in TEMPLATES:

                    async def service(name: str = name) -> Any:
                        return await prompts.render(tenant_id=tenant["tenant_id"], name=name, variables=VARIABLES[name])

                    async def http(name: str = name) -> Any:
                        r = await c.post(f"/api/v1/prompts/{name}/render", json={"variables": VARIABLES[name]})
                        assert r.status_code == 200, r.text
                        return r

                    rate, samples = await timed(n, service)
                    print(f"{name:7s} service {rate:8.0f} renders/s  {percentiles(samples)}")
                    rate, samples = await timed(n, http)
                    print(f"{name:7s} http    {rate:8.0f} renders/s  {percentiles(samples)}")
                    per_task = n // concurrency
                    t0 = time.perf_counter()
                    await asyncio.gather(*(timed(per_task, service) for _ in range(concurrency)))
                    rate = per_task * concurrency / (time.perf_counter() - t0)
                    print(f"{name:7s} service {rate:8.0f} renders/s  with {concurrency} in flight")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="renders of each kind")
    parser.add_argument("--concurrency", type=int, default=8, help="renders in flight for the concurrent run")
    args = parser.parse_args()
    asyncio.run(main(args.n, args.concurrency))
