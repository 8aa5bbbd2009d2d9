"""The pytest plugin users get with the package: fixtures, their configuration, both backends."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import httpx
import pytest

from flowmusic_async import FlowMusic, Timing
from flowmusic_async.testing import Faults, SimAccount, Simulator
from flowmusic_async.testing.pytest_plugin import DEFAULT_TIME_SCALE, MakeClient, MakeSim

# The plugin promises both anyio backends, so every test here runs on each.
pytestmark = pytest.mark.anyio_backends("asyncio", "trio")

ROOT = Path(__file__).parents[1]


def test_the_plugin_is_registered_through_its_entry_point(pytestconfig: pytest.Config) -> None:
    """Users get the fixtures by installing the package, with no conftest line."""
    assert pytestconfig.pluginmanager.has_plugin("flowmusic")


@pytest.mark.anyio
async def test_the_client_fixture_generates_a_song_on_the_simulator_fixture(
    flowmusic_client: FlowMusic, flowmusic_sim: Simulator
) -> None:
    """The two fixtures are bound together, and a song takes milliseconds."""
    job = await flowmusic_client.generate("lofi beat, rainy night")
    assert job.is_completed and job.clips
    assert flowmusic_sim.stats.jobs_created == 1
    assert flowmusic_sim.clock.time_scale == DEFAULT_TIME_SCALE
    assert flowmusic_client.timing == Timing.scaled(DEFAULT_TIME_SCALE)


@pytest.mark.anyio
@pytest.mark.flowmusic_sim(accounts=[1, 3], time_scale=0.001, faults={"burst_429": 2}, seed=5)
async def test_the_marker_configures_accounts_time_scale_and_faults(
    flowmusic_client: FlowMusic, flowmusic_sim: Simulator
) -> None:
    """Ints become funded accounts with that maxJobs, a dict becomes Faults, the rest passes on."""
    accounts = await flowmusic_client.accounts.list()
    assert sorted((email, a.max_jobs) for email, a in accounts.items()) == [
        ("account0@example.com", 1),
        ("account1@example.com", 3),
    ]
    assert flowmusic_sim.faults.burst_429 == 2
    assert flowmusic_client.timing == Timing.scaled(0.001)
    job = await flowmusic_client.generate("through two 429s")
    assert job.is_completed
    assert flowmusic_sim.stats.responses_429 == 2


@pytest.mark.flowmusic_sim(time_scale=0.004)
class TestMarkersNest:
    @pytest.mark.anyio
    @pytest.mark.flowmusic_sim(seed=9)
    async def test_the_closest_marker_wins_and_the_class_marker_still_applies(
        self, flowmusic_sim: Simulator
    ) -> None:
        """A class (or module) marker sets a default; a test's own marker adds to it."""
        assert flowmusic_sim.clock.time_scale == 0.004

    @pytest.mark.anyio
    @pytest.mark.flowmusic_sim(time_scale=0.003)
    async def test_a_test_marker_overrides_the_class_marker(self, flowmusic_sim: Simulator) -> None:
        """The closest marker wins on a key both set."""
        assert flowmusic_sim.clock.time_scale == 0.003


@pytest.mark.anyio
@pytest.mark.parametrize(
    "flowmusic_sim",
    [
        {"accounts": [SimAccount(email="solo@example.com", max_jobs=2, credits=15.0)]},
        {"faults": Faults(burst_429=1)},
    ],
    indirect=True,
)
async def test_indirect_parameters_configure_the_simulator(flowmusic_sim: Simulator) -> None:
    """Parametrizing the fixture runs the same test against several simulators."""
    emails = list(flowmusic_sim.world.accounts)
    assert emails == ["solo@example.com"] or flowmusic_sim.faults.burst_429 == 1


@pytest.mark.anyio
@pytest.mark.flowmusic_sim(timing=Timing.scaled(0.5))
async def test_the_timing_option_replaces_the_clients_timing(
    flowmusic_client: FlowMusic, flowmusic_sim: Simulator
) -> None:
    """`timing` configures the client, not the simulator."""
    assert flowmusic_client.timing == Timing.scaled(0.5)
    assert flowmusic_sim.clock.time_scale == DEFAULT_TIME_SCALE


class _Receiver:
    """A webhook endpoint for the marker below; each test gives it a fresh event."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.arrived: anyio.Event | None = None

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(await request.aread())
        assert self.arrived is not None
        self.arrived.set()
        return httpx.Response(200)


_RECEIVER = _Receiver()


@pytest.mark.anyio
@pytest.mark.flowmusic_sim(webhook_transport=httpx.MockTransport(_RECEIVER))
async def test_webhooks_are_delivered_while_the_fixture_runs(
    flowmusic_client: FlowMusic, flowmusic_sim: Simulator
) -> None:
    """The fixture enters the simulator, so a reply_url receives its callback."""
    _RECEIVER.arrived = anyio.Event()
    job = await flowmusic_client.generate("hooked", reply_url="https://example.com/hook")
    with anyio.fail_after(5):
        await _RECEIVER.arrived.wait()
    assert job.jobid.encode() in _RECEIVER.bodies[-1]


@pytest.mark.anyio
@pytest.mark.flowmusic_sim(time_scale=0.004, seed=3, account_email="team{i}@example.com")
async def test_make_sim_builds_accounts_from_max_jobs_on_the_markers_options(
    flowmusic_make_sim: MakeSim,
) -> None:
    """Positional ints are accounts' maxJobs; the marker sets defaults a call may override."""
    sim = flowmusic_make_sim(2, 3, latency=0.05)
    assert [(a.email, a.max_jobs) for a in sim.world.accounts.values()] == [
        ("team0@example.com", 2),
        ("team1@example.com", 3),
    ]
    assert sim.clock.time_scale == 0.004
    assert sim.faults.latency_s == 0.05
    faster = flowmusic_make_sim(1, time_scale=0.001, faults=Faults(burst_429=1), latency=0.0)
    assert faster.clock.time_scale == 0.001
    assert faster.faults.burst_429 == 1 and faster.faults.latency_s == 0.0
    with pytest.raises(TypeError, match="not both"):
        flowmusic_make_sim(1, accounts=[2])


@pytest.mark.anyio
async def test_make_client_binds_clients_to_a_simulator_timed_like_it(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """In-process by default, over the socket given a base_url; other options pass through."""
    sim = flowmusic_make_sim(2, time_scale=0.001)
    async with flowmusic_make_client(sim, max_retries=0) as fm:
        assert fm.timing == Timing.scaled(0.001)
        assert (await fm.generate("in-process")).is_completed
    async with sim.serve() as url, flowmusic_make_client(sim, base_url=url) as over_socket:
        assert over_socket.base_url == url
        assert (await over_socket.generate("over loopback")).is_completed
    assert sim.stats.jobs_created == 2


@pytest.mark.anyio
@pytest.mark.flowmusic_sim(timing=Timing.scaled(0.5))
async def test_make_client_takes_the_markers_timing_unless_given_one(
    flowmusic_make_sim: MakeSim, flowmusic_make_client: MakeClient
) -> None:
    """The marker's `timing` is the client's, as with `flowmusic_client`; an argument wins."""
    sim = flowmusic_make_sim(1)
    assert flowmusic_make_client(sim).timing == Timing.scaled(0.5)
    assert flowmusic_make_client(sim, timing=Timing.scaled(0.1)).timing == Timing.scaled(0.1)


def test_make_client_closes_every_client_it_made_when_the_test_ends(tmp_path: Path) -> None:
    """A client left open, one never opened and one closed by the test all end closed, and a
    sync test can build simulators."""
    result = _run_pytest(
        tmp_path,
        """
        import pytest

        made = []

        @pytest.fixture
        def anyio_backend():
            return "asyncio"

        @pytest.mark.anyio
        async def test_leaves_clients(flowmusic_make_sim, flowmusic_make_client):
            sim = flowmusic_make_sim(1)
            left_open = await flowmusic_make_client(sim).open()
            assert (await left_open.generate("x")).is_completed
            async with flowmusic_make_client(sim) as closed_here:
                pass
            made.extend([left_open, flowmusic_make_client(sim), closed_here])

        def test_all_of_them_were_closed(flowmusic_make_sim):
            assert [fm.closed for fm in made] == [True, True, True]
            assert flowmusic_make_sim(3).world.accounts["account0@example.com"].max_jobs == 3
        """,
        "--strict-markers",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


def _run_pytest(tmp_path: Path, source: str, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_user_suite.py").write_text(textwrap.dedent(source))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )


def test_a_users_suite_gets_the_fixtures_with_no_conftest(tmp_path: Path) -> None:
    """What a user writes on day one: no conftest, no imports from the plugin, both backends."""
    result = _run_pytest(
        tmp_path,
        """
        import pytest

        @pytest.fixture(params=["asyncio", "trio"])
        def anyio_backend(request):
            return request.param

        @pytest.mark.anyio
        @pytest.mark.flowmusic_sim(accounts=[2])
        async def test_song(flowmusic_client, flowmusic_sim):
            job = await flowmusic_client.generate("x")
            assert job.is_completed
            assert flowmusic_sim.stats.duplicate_submissions == 0
        """,
        "--strict-markers",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


def test_a_positional_marker_argument_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    """Options are named; a positional one would be silently ambiguous."""
    result = _run_pytest(
        tmp_path,
        """
        import pytest

        @pytest.mark.anyio
        @pytest.mark.flowmusic_sim(2)
        async def test_song(flowmusic_sim):
            pass
        """,
    )
    assert result.returncode != 0
    assert "keyword arguments only" in result.stdout
