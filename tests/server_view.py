"""What the simulator itself says of its jobs: tests judge by it, not by what the client thinks."""

from __future__ import annotations

import httpx

from flowmusic_async.testing import Simulator


async def server_states(sim: Simulator) -> dict[str, str]:
    """jobid -> "running" / "completed" / the failure code, read from the simulator itself."""
    states: dict[str, str] = {}
    async with httpx.AsyncClient(transport=sim.transport(), base_url=sim.base_url) as http:
        headers = {"Authorization": f"Bearer {sim.token}"}
        for jobid in sim.stats.jobs:
            record = (await http.get(f"/jobs/{jobid}", headers=headers)).json()
            if record["status"] == "pending":
                states[jobid] = "running"
            elif record["status"] == "completed":
                states[jobid] = "completed"
            else:
                states[jobid] = record["error"]["code"]
    return states
