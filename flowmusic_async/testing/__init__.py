"""A faithful, stateful simulator of the Flow Music API, for tests and benchmarks.

    sim = Simulator(time_scale=0.01)
    async with httpx.AsyncClient(transport=sim.transport(), base_url=sim.base_url) as http: ...
    async with sim.serve() as base_url: ...        # real loopback HTTP/1.1

It is an independent implementation of the API contract (it does not import the client),
so it can check the client.
"""

from ._faults import Faults
from ._simulator import Simulator
from ._state import SimAccount
from ._stats import JobTimes, SimStats

__all__ = ["Faults", "JobTimes", "SimAccount", "SimStats", "Simulator"]
