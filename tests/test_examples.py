"""Every file in examples/ runs against the simulator, as its reader would use it.

The examples are what users copy; a broken one is a bug report waiting to happen. Each test
drives an example the way its framework would (a Discord interaction, an HTTP request, a CSV
on disk, several processes), with songs taking milliseconds.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import anyio
import httpx
import msgspec
import pytest

from flowmusic_async import Event, FlowMusic, Timing
from flowmusic_async.testing import SimAccount, Simulator
from flowmusic_async.testing.pytest_plugin import MakeClient

ROOT = Path(__file__).parents[1]
EXAMPLES = ROOT / "examples"
SCALE = 0.002


def load(name: str) -> ModuleType:
    """Import examples/<name>.py as a module (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_every_example_has_a_test() -> None:
    """A new example without a test here would silently rot."""
    tested = {
        "batch_to_disk",
        "discord_bot",
        "fastapi_webhooks",
        "shared_accounts",
        "trio_batch",
    }
    assert {path.stem for path in EXAMPLES.glob("*.py")} == tested


# ----- discord_bot.py ------------------------------------------------------------------------


# --8<-- [start:discord]
class FakeMessage:
    def __init__(self) -> None:
        self.edits: list[dict[str, Any]] = []

    async def edit(self, **fields: Any) -> None:
        self.edits.append(fields)


class FakeInteraction:
    """What discord.py hands a command or a button: a user, a response, a followup webhook."""

    def __init__(self, user_id: int, guild_id: int | None = None) -> None:
        self.user = SimpleNamespace(id=user_id)
        self.guild_id = guild_id
        self.deferred = False
        self.sent: list[dict[str, Any]] = []
        self.message_sent = anyio.Event()
        self.message = FakeMessage()
        self.response = SimpleNamespace(defer=self._defer, edit_message=self._edit_message)
        self.followup = SimpleNamespace(send=self._send)
        self.response_edits: list[dict[str, Any]] = []

    async def _defer(self, *, thinking: bool = False) -> None:
        self.deferred = thinking

    async def _edit_message(self, **fields: Any) -> None:
        self.response_edits.append(fields)

    async def _send(self, content: str, *, view: Any = None, wait: bool = False) -> FakeMessage:
        self.sent.append({"content": content, "view": view})
        self.message_sent.set()
        return self.message


@pytest.mark.anyio
@pytest.mark.flowmusic_sim(accounts=[2])
async def test_discord_song_command_defers_then_posts_the_clip_links(
    flowmusic_client: FlowMusic,
) -> None:
    """The /song handler defers at once, shows a Cancel button, then edits in the links."""
    bot = load("discord_bot")
    command = bot.song_command(flowmusic_client)
    interaction = FakeInteraction(user_id=1)

    await command.callback(interaction, prompt="sea shanty about asyncio")

    assert interaction.deferred
    assert "Writing your song" in interaction.sent[0]["content"]
    assert isinstance(interaction.sent[0]["view"], bot.CancelView)
    final = interaction.message.edits[-1]
    assert final["view"] is None
    assert final["content"].count("http://localhost/") >= 1  # the clips' audio URLs


@pytest.mark.anyio
@pytest.mark.flowmusic_sim(accounts=[1])
async def test_discord_cancel_button_cancels_the_job_server_side(
    flowmusic_client: FlowMusic, flowmusic_sim: Simulator
) -> None:
    """Pressing Cancel sends DELETE /jobs/{jobid}: the slot is freed and the message says so."""
    bot = load("discord_bot")
    command = bot.song_command(flowmusic_client)
    interaction = FakeInteraction(user_id=1)
    async with anyio.create_task_group() as tg:
        tg.start_soon(command.callback, interaction, "a very long prog rock epic")
        with anyio.fail_after(5):
            await interaction.message_sent.wait()
        view = interaction.sent[0]["view"]
        assert not await view.interaction_check(FakeInteraction(user_id=2))  # not yours
        button = view.children[0]
        await button.callback(FakeInteraction(user_id=1))

    assert interaction.message.edits[-1] == {"content": "Cancelled.", "view": None}
    jobid = view.handle.jobid
    error = (await flowmusic_client.jobs.get(jobid)).error
    assert error is not None and error.code == "user_cancelled"
    deletes = {k: n for k, n in flowmusic_sim.stats.requests.items() if k[0].startswith("DELETE")}
    assert deletes == {("DELETE /jobs/{jobid}", 204): 1}, deletes


@pytest.mark.anyio
async def test_discord_song_command_reports_a_refused_prompt(flowmusic_client: FlowMusic) -> None:
    """A moderated prompt is answered in the channel, not lost in a log.

    The job is accepted, renders, then ends failed (moderation_reject), as on the API.
    """
    bot = load("discord_bot")
    interaction = FakeInteraction(user_id=1)
    await bot.song_command(flowmusic_client).callback(interaction, prompt="[moderate] no")
    final = interaction.message.edits[-1]["content"]
    assert final.startswith("That failed") and "moderation_reject" in final


@pytest.mark.anyio
async def test_discord_songs_are_queued_per_server_or_per_user_in_a_dm(
    flowmusic_client: FlowMusic,
) -> None:
    """Each server is a tenant of its own (a DM, its user), so busy servers take turns."""
    bot = load("discord_bot")
    tenants: list[str | None] = []
    flowmusic_client.add_event_hook(
        lambda event: tenants.append(event.tenant) if event.kind == "submitted" else None
    )
    command = bot.song_command(flowmusic_client)
    await command.callback(FakeInteraction(user_id=1, guild_id=42), prompt="server song")
    await command.callback(FakeInteraction(user_id=7), prompt="direct message song")
    assert tenants == ["guild:42", "user:7"]


@pytest.mark.anyio
async def test_discord_each_server_spends_within_its_own_budget(
    flowmusic_sim: Simulator, flowmusic_make_client: MakeClient
) -> None:
    """A server over its budget is told so, and nothing is sent for it; others go on."""
    bot = load("discord_bot")
    async with flowmusic_make_client(flowmusic_sim, tenant_spend_limit=10.0) as fm:
        command = bot.song_command(fm)
        await command.callback(FakeInteraction(user_id=1, guild_id=42), prompt="first song")
        refused = FakeInteraction(user_id=2, guild_id=42)
        await command.callback(refused, prompt="one song too many")
        await command.callback(FakeInteraction(user_id=3, guild_id=43), prompt="another server")
    assert refused.sent == [
        {"content": "This server has used its budget for now (10 credits).", "view": None}
    ]
    assert flowmusic_sim.stats.jobs_created == 2


# --8<-- [end:discord]
# ----- fastapi_webhooks.py -------------------------------------------------------------------


# --8<-- [start:fastapi]
class _ForwardToApp(httpx.AsyncBaseTransport):
    """The simulator's webhook transport: delivers each callback to the app under test."""

    app: Any = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await httpx.ASGITransport(app=self.app).handle_async_request(request)


_TO_APP = _ForwardToApp()
# Sweeps once, early, then not for an hour: only the webhook can tell the client the song ended.
_WEBHOOK_ONLY = msgspec.structs.replace(Timing.scaled(SCALE), poll_interval=3600.0)


@pytest.mark.anyio
@pytest.mark.flowmusic_sim(accounts=[2], webhook_transport=_TO_APP, timing=_WEBHOOK_ONLY)
async def test_fastapi_app_answers_202_then_serves_the_song_its_webhook_announced(
    flowmusic_client: FlowMusic, flowmusic_sim: Simulator
) -> None:
    """Submit -> 202 with the jobid; the simulator's callback settles it; GET serves the clips."""
    webapp = load("fastapi_webhooks")
    app = webapp.create_app(public_url="https://songs.example.com", fm=flowmusic_client)
    _TO_APP.app = app
    completed = anyio.Event()

    def on_event(event: Event) -> None:
        if event.kind == "completed":
            completed.set()

    flowmusic_client.add_event_hook(on_event)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://app"
    ) as http:
        created = await http.post("/songs", json={"prompt": "ambient piano", "instrumental": True})
        assert created.status_code == 202
        jobid = created.json()["jobid"]
        pending = await http.get(f"/songs/{jobid}")
        assert (pending.status_code, pending.json()["status"]) == (202, "pending")

        with anyio.fail_after(10):
            await completed.wait()
        done = await http.get(f"/songs/{jobid}")
        assert (await http.get("/songs/nope")).status_code == 404

    assert done.status_code == 200
    assert done.json()["status"] == "completed"
    assert done.json()["clips"]
    assert flowmusic_sim.stats.webhooks_delivered == 1
    job = await flowmusic_client.jobs.get(jobid)
    assert job.request["replyUrl"] == "https://songs.example.com/flowmusic-callback"


# --8<-- [end:fastapi]
# ----- batch_to_disk.py ----------------------------------------------------------------------


def write_csv(path: Path, count: int) -> None:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["prompt", "instrumental"])
        for i in range(count):
            writer.writerow([f"song {i}, dream pop", "true" if i % 3 == 0 else ""])
        writer.writerow(["[moderate] a refused prompt", ""])


def quiet_progress() -> Any:
    import io

    from rich.console import Console
    from rich.progress import Progress

    return Progress(console=Console(file=io.StringIO(), force_terminal=False))


@pytest.mark.anyio
@pytest.mark.flowmusic_sim(accounts=[8, 8, 8])
async def test_batch_to_disk_resumes_after_a_crash_without_paying_twice(
    flowmusic_sim: Simulator, tmp_path: Path
) -> None:
    """A run stopped part-way, then run again: every song on disk, each generated exactly once."""
    batch = load("batch_to_disk")
    write_csv(tmp_path / "prompts.csv", 120)
    requests = batch.read_requests(tmp_path / "prompts.csv")
    assert requests[0] == {"prompt": "song 0, dream pop", "instrumental": True}
    out, journal = tmp_path / "songs", tmp_path / "songs.db"

    def client() -> FlowMusic:
        return FlowMusic(
            token=flowmusic_sim.token,
            base_url=flowmusic_sim.base_url,
            transport=flowmusic_sim.transport(),
            timing=Timing.scaled(SCALE),
        )

    # First run: stopped (the batch's task cancelled, as by Ctrl-C) once 40 songs are done.
    async with client() as fm:
        done = 0
        with anyio.CancelScope() as crash:

            def count(event: Event) -> None:
                nonlocal done
                done += event.kind == "completed"
                if done == 40:
                    crash.cancel()

            fm.add_event_hook(count)
            await batch.run_batch(fm, requests, out=out, journal=journal, progress=quiet_progress())
    assert crash.cancelled_caught
    assert flowmusic_sim.stats.jobs_created < 120

    progress = quiet_progress()
    async with client() as fm:
        outcomes = await batch.run_batch(fm, requests, out=out, journal=journal, progress=progress)

    assert len(outcomes) == 121 and progress.tasks[0].completed == 121
    assert sum(o.resumed for o in outcomes) >= 30  # songs finished before the stop
    assert [o.index for o in outcomes if not o.ok] == [120], [
        (o.index, o.resumed, repr(o.error)) for o in outcomes if not o.ok
    ]  # the refused prompt
    assert flowmusic_sim.stats.jobs_created == 120  # nothing paid twice
    assert flowmusic_sim.stats.duplicate_submissions == 0
    songs = sorted(out.glob("*/*.m4a"))
    assert len(songs) == sum(len(o.job.clips) for o in outcomes if o.ok)
    assert len({path.parent.name for path in songs}) == 120


@pytest.mark.anyio
@pytest.mark.flowmusic_sim(accounts=[8, 8])
async def test_batch_to_disk_resumes_after_ctrl_c_that_also_closes_the_client(
    flowmusic_sim: Simulator, tmp_path: Path
) -> None:
    """Ctrl-C cancels the whole program, client included; the journal must still resume."""
    batch = load("batch_to_disk")
    write_csv(tmp_path / "prompts.csv", 60)
    requests = batch.read_requests(tmp_path / "prompts.csv")
    out, journal = tmp_path / "songs", tmp_path / "songs.db"

    def client() -> FlowMusic:
        return FlowMusic(
            token=flowmusic_sim.token,
            base_url=flowmusic_sim.base_url,
            transport=flowmusic_sim.transport(),
            timing=Timing.scaled(SCALE),
        )

    done = 0
    with anyio.CancelScope() as ctrl_c:

        def count(event: Event) -> None:
            nonlocal done
            done += event.kind == "completed"
            if done == 20:
                ctrl_c.cancel()

        async with client() as fm:
            fm.add_event_hook(count)
            await batch.run_batch(fm, requests, out=out, journal=journal, progress=quiet_progress())
    async with client() as fm:
        outcomes = await batch.run_batch(
            fm, requests, out=out, journal=journal, progress=quiet_progress()
        )
    assert [o.index for o in outcomes if not o.ok] == [60]


def test_batch_to_disk_command_line_on_the_embedded_simulator(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python examples/batch_to_disk.py prompts.csv --simulate` works with no token."""
    batch = load("batch_to_disk")
    write_csv(tmp_path / "prompts.csv", 6)
    out = tmp_path / "songs"
    argv = [str(tmp_path / "prompts.csv"), "--simulate", "--out", str(out)]
    argv += ["--journal", str(tmp_path / "j.db"), "--formats", "m4a,wav"]
    code = anyio.run(batch.main, argv)
    assert code == 1  # the refused prompt
    assert "6 songs in" in capsys.readouterr().out
    assert len(list(out.glob("*/*.wav"))) == len(list(out.glob("*/*.m4a"))) >= 6
    sidecar = json.loads(next(out.glob("0000/*.json")).read_text())
    assert sidecar["prompt"] == "song 0, dream pop"


def test_batch_to_disk_refuses_an_unknown_format_before_anything_is_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A typo in --formats is a usage error naming the choices, not songs paid for and then
    a failed download."""
    monkeypatch.chdir(tmp_path)  # where the default journal and song folder would go
    batch = load("batch_to_disk")
    write_csv(tmp_path / "prompts.csv", 2)
    argv = [str(tmp_path / "prompts.csv"), "--simulate", "--formats", "m4a,flac"]
    with pytest.raises(SystemExit) as exit_:
        anyio.run(batch.main, argv)
    assert exit_.value.code == 2
    assert "unknown format 'flac'; choose from m4a, wav, mp3, image" in capsys.readouterr().err
    assert not (tmp_path / "songs.db").exists() and not (tmp_path / "songs").exists()


# ----- trio_batch.py -------------------------------------------------------------------------


@pytest.mark.anyio_backends("trio")
@pytest.mark.anyio
@pytest.mark.flowmusic_sim(accounts=[3, 3])
async def test_trio_batch_stops_at_its_deadline_and_the_rerun_finishes_it(
    flowmusic_sim: Simulator, tmp_path: Path
) -> None:
    """Under trio, a move_on_after stops the batch; the journal lets the next run finish it."""
    example = load("trio_batch")
    prompts = [f"trio song {i}" for i in range(30)]
    out, journal = tmp_path / "songs", tmp_path / "songs.db"

    def client() -> FlowMusic:
        return FlowMusic(
            token=flowmusic_sim.token,
            base_url=flowmusic_sim.base_url,
            transport=flowmusic_sim.transport(),
            timing=Timing.scaled(SCALE),
        )

    async with client() as fm:
        first = await example.run_batch(fm, prompts, out=out, journal=journal, deadline=0.3)
    assert len(first) < 30  # stopped part-way (30 songs on 6 slots take over a second)
    async with client() as fm:
        second = await example.run_batch(fm, prompts, out=out, journal=journal)
    assert len(second) == 30 and all(o.ok for o in second)
    assert flowmusic_sim.stats.jobs_created == 30
    assert len({p.parent.name for p in out.glob("*/*.m4a")}) == 30


def test_trio_batch_command_line_on_the_embedded_simulator(tmp_path: Path) -> None:
    """`python examples/trio_batch.py prompts.txt --simulate` runs under trio.run."""
    import trio

    example = load("trio_batch")
    (tmp_path / "prompts.txt").write_text("one\n\ntwo\nthree\n")
    argv = [str(tmp_path / "prompts.txt"), "--simulate", "--out", str(tmp_path / "songs")]
    argv += ["--journal", str(tmp_path / "j.db")]
    assert trio.run(example.main, argv) == 0
    assert len({p.parent.name for p in (tmp_path / "songs").glob("*/*.m4a")}) == 3


# ----- shared_accounts.py --------------------------------------------------------------------


@pytest.mark.anyio
async def test_shared_accounts_workers_in_separate_processes_share_one_simulator() -> None:
    """Three processes, one token, three accounts over loopback HTTP: every song once, none lost."""
    example = load("shared_accounts")
    scale = 0.005
    # Fewer slots than songs: workers find accounts filled by each other and wait their turn.
    sim = Simulator(
        accounts=[SimAccount(email=f"acct{i}@example.com", max_jobs=2) for i in range(3)],
        time_scale=scale,
        seed=4,
    )
    prompts = [f"shared song {i}" for i in range(12)]
    with anyio.fail_after(30):
        async with sim.serve() as base_url:
            results = await example.run_workers(
                prompts, workers=3, base_url=base_url, token=sim.token, time_scale=scale
            )
    assert sorted(r["prompt"] for r in results) == sorted(prompts)
    assert all("jobid" in r for r in results), results
    assert len({r["pid"] for r in results}) == 3
    assert sim.stats.jobs_created == 12
    assert sim.stats.duplicate_submissions == 0
    assert all(peak <= 2 for peak in sim.stats.peak_running.values())


def test_shared_accounts_command_line_serves_its_own_simulator(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python examples/shared_accounts.py prompts.txt --simulate` needs no token."""
    example = load("shared_accounts")
    (tmp_path / "prompts.txt").write_text("a\nb\nc\nd\n")
    assert (
        anyio.run(example.main, [str(tmp_path / "prompts.txt"), "--workers", "2", "--simulate"])
        == 0
    )
    assert "4 songs from 2 processes, 0 failed" in capsys.readouterr().out


@pytest.mark.anyio
@pytest.mark.flowmusic_sim(accounts=[2])
async def test_a_second_process_gets_a_slot_once_the_first_ones_jobs_end(
    flowmusic_sim: Simulator,
) -> None:
    """shared_accounts.py relies on it: a worker whose accounts are full waits, then runs."""

    def client() -> FlowMusic:
        return FlowMusic(
            token=flowmusic_sim.token,
            base_url=flowmusic_sim.base_url,
            transport=flowmusic_sim.transport(),
            timing=Timing.scaled(SCALE),
        )

    async with client() as first, client() as second:
        handles = [await first.submit("first process, 1"), await first.submit("first process, 2")]
        with anyio.fail_after(5):
            job = await second.generate("second process")
            for handle in handles:
                await handle
    assert job.is_completed


# ----- a first run, as the docstrings tell it -------------------------------------------------

SAMPLES = {
    "batch_to_disk": "prompts.csv",
    "trio_batch": "prompts.txt",
    "shared_accounts": "prompts.txt",
}


def docstring_commands(name: str) -> list[list[str]]:
    """The `python examples/NAME.py ...` lines of an example's docstring, as argv."""
    doc = load(name).__doc__ or ""
    prefix = f"python examples/{name}.py "
    return [
        line.strip().split("#")[0].split()[2:]
        for line in doc.splitlines()
        if prefix in line and "USEAPI_TOKEN=" not in line
    ]


def test_each_example_states_what_it_needs_in_its_first_lines() -> None:
    """trio, discord.py, a token: a reader learns it before running the file, not from a
    traceback."""
    needs = {
        "batch_to_disk": ["rich", "USEAPI_TOKEN"],
        "trio_batch": ["trio", "USEAPI_TOKEN"],
        "shared_accounts": ["USEAPI_TOKEN"],
        "discord_bot": ["discord.py", "DISCORD_TOKEN", "USEAPI_TOKEN"],
        "fastapi_webhooks": ["fastapi", "uvicorn", "PUBLIC_URL", "USEAPI_TOKEN"],
    }
    for name, words in needs.items():
        head = "\n".join((load(name).__doc__ or "").splitlines()[:6])
        assert "Needs:" in head and all(word in head for word in words), (name, head)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_the_sample_input_ships_and_the_documented_simulated_run_works(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The docstring's `--simulate` line, run from the checkout as written, finds its sample
    prompts file and completes every song (the first documented run used to end in a
    FileNotFoundError)."""
    [argv] = [args for args in docstring_commands(name) if "--simulate" in args]
    assert argv[0] == f"examples/{SAMPLES[name]}" and (ROOT / argv[0]).is_file()
    monkeypatch.chdir(tmp_path)  # where the songs and the journal go
    argv = [str(ROOT / argv[0]), *argv[1:]]
    if name == "trio_batch":
        import trio

        code = trio.run(load(name).main, argv)
    else:
        code = anyio.run(load(name).main, argv)
    prompts = [line for line in (ROOT / "examples/prompts.txt").read_text().splitlines() if line]
    assert code == 0, capsys.readouterr()
    assert f"{len(prompts)} songs" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_a_missing_prompts_file_or_token_is_a_usage_message(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No traceback for the two first mistakes: a prompts file that is not there, and no
    USEAPI_TOKEN without --simulate. Each is one line naming what to do."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("USEAPI_TOKEN", raising=False)
    module = load(name)
    runner: Any = anyio.run
    if name == "trio_batch":
        import trio

        runner = trio.run
    sample = str(ROOT / "examples" / SAMPLES[name])
    for argv, expected in [
        (["prompts.csv", "--simulate"], "prompts.csv: no such file (examples/prompts."),
        ([sample], "set USEAPI_TOKEN, or pass --simulate"),
    ]:
        with pytest.raises(SystemExit) as exit_:
            runner(module.main, argv)
        assert exit_.value.code == 2
        message = capsys.readouterr().err.strip().splitlines()[-1]
        assert "error: " in message and expected in message, message
    assert list(tmp_path.iterdir()) == []  # nothing written, nothing sent


def test_discord_bot_without_its_tokens_says_which_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`KeyError: 'DISCORD_TOKEN'` was the first thing a reader saw."""
    bot = load("discord_bot")
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    monkeypatch.setenv("USEAPI_TOKEN", "user:1-test")
    with pytest.raises(SystemExit) as exit_:
        bot.settings()
    assert str(exit_.value.code) == "discord_bot.py: set DISCORD_TOKEN (see the top of this file)"
    monkeypatch.setenv("DISCORD_TOKEN", "discord-test-token")
    assert bot.settings()["DISCORD_TOKEN"] == "discord-test-token"


def test_fastapi_app_without_its_settings_says_which_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`uvicorn fastapi_webhooks:app` without PUBLIC_URL answered "Attribute app not found"."""
    monkeypatch.delenv("PUBLIC_URL", raising=False)
    monkeypatch.setenv("USEAPI_TOKEN", "user:1-test")
    module = load("fastapi_webhooks")
    with pytest.raises(SystemExit) as exit_:
        _ = module.app
    assert str(exit_.value.code) == "fastapi_webhooks.py: set PUBLIC_URL (see the top of this file)"
