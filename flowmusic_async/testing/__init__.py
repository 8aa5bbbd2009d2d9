"""A faithful, stateful simulator of the Flow Music API, for tests and benchmarks.

    sim = Simulator(time_scale=0.01)
    async with httpx.AsyncClient(transport=sim.transport(), base_url=sim.base_url) as http: ...
    async with sim.serve() as base_url: ...        # real loopback HTTP/1.1

It is an independent implementation of the API contract (it does not import the client),
so it can check the client. The one exception is the client's testing switch, re-exported
here for the user's tests:

    with instant_retries() as delays: ...        # retries come at once; delays records them
    set_instant_retries(True)                     # the same for the whole process
"""

from .._retry import instant_retries, set_instant_retries
from ._faults import Faults
from ._simulator import Simulator
from ._state import SimAccount
from ._stats import JobTimes, SimStats

__all__ = [
    "Faults",
    "JobTimes",
    "SimAccount",
    "SimStats",
    "Simulator",
    "instant_retries",
    "set_instant_retries",
]
