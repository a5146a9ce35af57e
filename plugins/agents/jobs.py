"""The `agents.run` job: a background run, carried on from its last recorded step.

The payload names the run only; the run's state is its rows (messages and steps), so a job started again after its
worker died replays the recorded steps and goes on from the first one not recorded: nothing is repeated.
"""

from __future__ import annotations

from typing import Any

from app.errors import Unavailable
from app.jobs import JobContext
from plugins.agents.interface import AGENTS

KIND = "agents.run"


async def run(ctx: JobContext) -> dict[str, Any]:
    from plugins.agents.service import DirectAgentsService  # the worker runs where the agents plugin runs direct

    agents = ctx.services.get(AGENTS)
    if not isinstance(agents, DirectAgentsService):
        raise Unavailable("agents.run runs only where the agents plugin runs direct")
    return await agents.run_job(ctx)
