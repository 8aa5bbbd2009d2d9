"""The conformance session's deterministic cases, run against the real server on every test run.

`nox -s conformance` runs them after schemathesis; here they run without schemathesis, so a
simulator that dies of a caller's bad `replyUrl` fails the ordinary suite too.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import conformance  # type: ignore[import-not-found]  # the session's script, beside this file


def test_undeliverable_reply_urls_never_stop_the_served_simulator() -> None:
    """`python -m flowmusic_async.testing` outlives webhooks it cannot send, and counts them."""
    simulator = conformance.start_simulator(seed=1)
    try:
        base_url = conformance.ready(simulator)
        assert conformance.deterministic_cases(base_url, simulator) == []
        assert simulator.poll() is None
    finally:
        conformance.stop_simulator(simulator)
