"""Prompt render throughput: renders per second for the simple `{{var}}` syntax and for sandboxed Jinja2.

Through the service (what the agents plugin calls) and through HTTP in-process, one render at a time, on an
embedded PostgreSQL (each render resolves the label in the database; the compiled template is cached).

    .venv/bin/python benchmarks/prompts_bench.py [--n 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._app import client, embedded_server, fresh_database, running_app

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


async def engine_only(n: int) -> None:
    """The renderer alone (compiled template, no database): what the per-render cost is made of."""
    from plugins.prompts.sandbox import PromptSandbox
    from plugins.prompts.templates import compile_prompt, render_prompt

    env = PromptSandbox()
    for name, (template, syntax) in TEMPLATES.items():
        compiled = compile_prompt(env, type="text", syntax=syntax, template=template)
        t0 = time.perf_counter()
        for _ in range(n):
            await render_prompt(compiled, VARIABLES[name])
        print(f"{name:7s} engine  {n / (time.perf_counter() - t0):8.0f} renders/s  (compiled, no database)")


async def main(n: int) -> None:
    from plugins.prompts import plugin

    await engine_only(n)

    with embedded_server() as server_url:
        url = await fresh_database(server_url)
        async with running_app(url, [plugin]) as (app, state, tenant):
            prompts = state["services"].prompts
            async with client(app, tenant["api_key"]) as c:
                for name, (template, syntax) in TEMPLATES.items():
                    r = await c.post("/api/v1/prompts", json={"name": name, "template": template, "syntax": syntax})
                    r.raise_for_status()
                for name in TEMPLATES:
                    t0 = time.perf_counter()
                    for _ in range(n):
                        await prompts.render(tenant_id=tenant["tenant_id"], name=name, variables=VARIABLES[name])
                    service_rate = n / (time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    for _ in range(n):
                        r = await c.post(f"/api/v1/prompts/{name}/render", json={"variables": VARIABLES[name]})
                        assert r.status_code == 200, r.text
                    http_rate = n / (time.perf_counter() - t0)
                    print(f"{name:7s} service {service_rate:8.0f} renders/s   http {http_rate:8.0f} renders/s  (n={n})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="renders of each kind")
    asyncio.run(main(parser.parse_args().n))
