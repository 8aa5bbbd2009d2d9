"""Every `flowmusic` subcommand driven in-process against the simulator: exit codes, files,
parseable --json output, and the token never printed."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from flowmusic_async import FlowMusic
from flowmusic_async._cli import run
from flowmusic_async.testing import SimAccount, Simulator

SCALE = 0.002  # a 40-150 s song takes 0.08-0.3 s
REFRESH_TOKEN = "rt-SuperSecretRefresh-0123456789"


class Result:
    """One CLI run: its exit code and everything it printed."""

    def __init__(self, code: int, stdout: str, stderr: str) -> None:
        self.code = code
        self.stdout = stdout
        self.stderr = stderr

    def json(self) -> Any:
        return json.loads(self.stdout)

    def json_lines(self) -> list[Any]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]


@pytest.fixture
def sim(request: pytest.FixtureRequest) -> Simulator:
    """The simulator; a test that needs jobs to stay running asks for a slower one with
    `@pytest.mark.parametrize("sim", [time_scale], indirect=True)`."""
    return Simulator(
        accounts=(
            SimAccount(email="alpha@example.com", max_jobs=3),
            SimAccount(email="beta@example.com", max_jobs=2),
        ),
        time_scale=getattr(request, "param", SCALE),
        seed=3,
    )


@pytest.fixture
def cli(sim: Simulator) -> Any:
    """Run the CLI with the simulator's transport and token; assert the token stays secret."""

    async def invoke(*argv: str, token: str | None = None, base: bool = True) -> Result:
        stdout, stderr = io.StringIO(), io.StringIO()
        secret = sim.token if token is None else token
        prefix = ["--token", secret, "--base-url", sim.base_url, "--time-scale", str(SCALE)]
        code = await run(
            [*prefix, *argv] if base else list(argv),
            transport=sim.transport(),
            stdout=stdout,
            stderr=stderr,
        )
        result = Result(code, stdout.getvalue(), stderr.getvalue())
        for text in (result.stdout, result.stderr):
            assert secret not in text
            assert REFRESH_TOKEN not in text
        return result

    return invoke


@pytest.fixture
async def fm(sim: Simulator) -> AsyncIterator[FlowMusic]:
    async with FlowMusic(token=sim.token, base_url=sim.base_url, transport=sim.transport()) as c:
        yield c


@pytest.mark.anyio
async def test_generate_downloads_files_and_prints_the_job_as_json(
    cli: Any, tmp_path: Path
) -> None:
    """The one-song path end to end: completed job, audio plus sidecar on disk, parseable JSON."""
    result = await cli(
        "--json",
        "generate",
        "calm piano",
        "--instrumental",
        "--out",
        str(tmp_path),
        "--formats",
        "m4a,wav",
    )
    assert result.code == 0, result.stderr
    job = result.json()
    assert job["status"] == "completed"
    assert job["request"]["instrumental"] is True
    files = [Path(p) for p in job["files"]]
    assert {p.suffix for p in files} == {".m4a", ".wav", ".json"}
    assert all(p.is_file() and p.parent == tmp_path for p in files)


@pytest.mark.anyio
async def test_generate_reads_lyrics_from_a_file_and_prints_a_table(
    cli: Any, tmp_path: Path
) -> None:
    """--lyrics-file is how people pass real lyrics; the human output names the clips."""
    lyrics = tmp_path / "song.txt"
    lyrics.write_text("[Verse]\nHello rain\n[Chorus]\nGoodbye sun\n")
    result = await cli("generate", "folk song", "--lyrics-file", str(lyrics), "--progress", "off")
    assert result.code == 0, result.stderr
    assert "completed" in result.stdout
    assert "clip" in result.stdout  # the clips table header


@pytest.mark.anyio
async def test_generate_with_a_missing_lyrics_file_is_a_usage_error(cli: Any) -> None:
    """A typo in a path must not cost a song."""
    result = await cli("generate", "x", "--lyrics-file", "/no/such/file.txt")
    assert result.code == 2
    assert "cannot read lyrics" in result.stderr


@pytest.mark.anyio
async def test_batch_json_lines_one_per_outcome_and_exit_1_on_a_failure(
    cli: Any, tmp_path: Path
) -> None:
    """Scripts read one JSON line per song and rely on exit 1 when any song failed."""
    batch = tmp_path / "songs.jsonl"
    batch.write_text(
        '{"prompt": "jazz trio"}\n'
        '{"prompt": "[moderate] refused", "instrumental": true}\n'
        '"bare string prompt"\n'
    )
    out = tmp_path / "out"
    result = await cli("--json", "batch", str(batch), "--out", str(out), "--concurrency", "2")
    assert result.code == 1, result.stderr
    lines = result.json_lines()
    outcomes = [doc for doc in lines if doc["type"] == "outcome"]
    assert sorted(doc["line"] for doc in outcomes) == [1, 2, 3]
    failed = [doc for doc in outcomes if not doc["ok"]]
    assert [doc["line"] for doc in failed] == [2]
    assert failed[0]["error"]["type"] == "JobFailed"  # moderated: rendered, then failed
    assert lines[-1]["type"] == "summary"
    assert lines[-1]["ok"] == 2 and lines[-1]["failed"] == 1 and lines[-1]["exit_code"] == 1
    written = [Path(p) for doc in outcomes for p in doc["files"]]
    assert written and all(p.is_file() for p in written)


@pytest.mark.anyio
async def test_batch_with_a_bad_line_exits_2_before_sending_anything(
    cli: Any, sim: Simulator, tmp_path: Path
) -> None:
    """Validation up front: a bad row stops the batch before the first paid POST."""
    batch = tmp_path / "songs.csv"
    batch.write_text("prompt,ghostwriter\nok song,pro\nbad song,maximal\n")
    result = await cli("batch", str(batch))
    assert result.code == 2
    assert f"{batch}:3: ghostwriter must be one of" in result.stderr
    assert sim.stats.jobs_created == 0


@pytest.mark.anyio
async def test_batch_resumes_from_its_journal_without_paying_again(
    cli: Any, sim: Simulator, tmp_path: Path
) -> None:
    """Re-running an interrupted batch with the same journal must not regenerate songs."""
    batch = tmp_path / "songs.txt"
    batch.write_text("first song\nsecond song\n")
    journal = str(tmp_path / "batch.sqlite")
    first = await cli("--json", "batch", str(batch), "--journal", journal)
    assert first.code == 0, first.stderr
    created = sim.stats.jobs_created
    second = await cli("--json", "batch", str(batch), "--journal", journal)
    assert second.code == 0, second.stderr
    outcomes = [doc for doc in second.json_lines() if doc["type"] == "outcome"]
    assert [doc["resumed"] for doc in outcomes] == [True, True]
    assert sim.stats.jobs_created == created


@pytest.mark.anyio
async def test_batch_plain_progress_and_summary_table(cli: Any, tmp_path: Path) -> None:
    """Without a terminal the progress falls back to plain lines and a results table."""
    batch = tmp_path / "songs.txt"
    batch.write_text("one\ntwo\n")
    result = await cli("batch", str(batch), "--progress", "plain")
    assert result.code == 0, result.stderr
    assert "[2/2] ok" in result.stderr
    assert "submitted job:" in result.stderr
    assert "Batch results" in result.stdout
    assert "2 songs: 2 ok, 0 failed" in result.stdout


@pytest.mark.anyio
async def test_batch_rich_progress_renders_without_a_terminal(cli: Any, tmp_path: Path) -> None:
    """The rich display (bars per song and per account) must run, forced onto a plain stream."""
    batch = tmp_path / "songs.txt"
    batch.write_text("one\ntwo\nthree\n")
    result = await cli("batch", str(batch), "--progress", "rich")
    assert result.code == 0, result.stderr
    assert "songs" in result.stderr and "alpha@example.com" in result.stderr


@pytest.mark.anyio
@pytest.mark.parametrize("sim", [0.05], indirect=True)  # the job must outlive four commands
async def test_jobs_list_get_and_cancel(cli: Any, fm: FlowMusic) -> None:
    """Watching and cancelling running jobs by hand is the escape hatch when a batch misbehaves."""
    job = await fm.music.create("long song", mode="async")
    listed = await cli("--json", "jobs", "list")
    assert listed.code == 0
    running = {j["jobid"] for entry in listed.json().values() for j in entry["jobs"]}
    assert job.jobid in running
    assert (await cli("jobs", "list")).stdout.count(job.jobid) == 1
    got = await cli("--json", "jobs", "get", job.jobid)
    assert got.json()["status"] == "pending"
    cancelled = await cli("--json", "jobs", "cancel", job.jobid)
    assert cancelled.code == 0 and cancelled.json() == {"cancelled": job.jobid}
    after = await cli("--json", "jobs", "get", job.jobid)
    assert after.json()["error"]["code"] == "user_cancelled"


@pytest.mark.anyio
async def test_jobs_get_unknown_exits_1_with_the_server_message(cli: Any) -> None:
    """A missing job is an ordinary failure (1), and --json still yields one document."""
    result = await cli("--json", "jobs", "get", "job:nope")
    assert result.code == 1
    error = result.json()["error"]
    assert error["status"] in (400, 404)
    assert result.stderr.startswith("flowmusic: error: ")


@pytest.mark.anyio
async def test_accounts_subcommands(cli: Any) -> None:
    """Account management from the shell, with the refresh token never echoed back."""
    listed = await cli("--json", "accounts", "list")
    assert set(listed.json()) == {"alpha@example.com", "beta@example.com"}
    assert "alpha@example.com" in (await cli("accounts", "list")).stdout
    got = await cli("--json", "accounts", "get", "alpha@example.com")
    assert got.json()["credits_remaining"] is not None
    assert "access_token" not in got.json() and "refresh_token" not in got.json()
    assert (await cli("accounts", "get", "alpha@example.com")).code == 0
    usage = await cli("--json", "accounts", "usage", "alpha@example.com")
    assert usage.json()["email"] == "alpha@example.com"
    assert (await cli("accounts", "usage", "alpha@example.com")).code == 0
    updated = await cli("--json", "accounts", "set-max-jobs", "beta@example.com", "5")
    assert updated.json()["maxJobs"] == 5
    added = await cli("--json", "accounts", "add", REFRESH_TOKEN, "--max-jobs", "2")
    assert added.code == 0
    new_email = added.json()["email"]
    deleted = await cli("accounts", "delete", new_email)
    assert deleted.code == 0 and new_email in deleted.stdout
    missing = await cli("accounts", "get", new_email)
    assert missing.code == 1


@pytest.mark.anyio
async def test_accounts_set_max_jobs_out_of_range_is_a_usage_error(cli: Any) -> None:
    """maxJobs 1-16 is checked locally, with argparse's exit code 2."""
    assert (await cli("accounts", "set-max-jobs", "alpha@example.com", "17")).code == 2


@pytest.mark.anyio
async def test_lyrics_prints_title_and_lyrics(cli: Any) -> None:
    """Lyrics without audio: human text and JSON."""
    human = await cli("lyrics", "a song about rain", "--structure", "verse, chorus")
    assert human.code == 0 and human.stdout.strip()
    doc = (await cli("--json", "lyrics", "a song about rain")).json()
    assert doc["lyrics"]


@pytest.mark.anyio
async def test_edit_effect_and_stems_write_new_clips(cli: Any, tmp_path: Path) -> None:
    """Edits wait like generations and download their clips; stems return four at once."""
    song = (await cli("--json", "generate", "drum groove")).json()
    clip = song["clips"][0]["clip"]
    effect = await cli(
        "--json",
        "edit",
        "effect",
        clip,
        "--effect",
        "Gain",
        "--gain-db",
        "3",
        "--out",
        str(tmp_path / "fx"),
    )
    assert effect.code == 0, effect.stderr
    assert effect.json()["status"] == "completed"
    assert any(p.endswith(".m4a") for p in effect.json()["files"])
    stems = await cli("--json", "edit", "stems", clip, "--out", str(tmp_path / "stems"))
    assert stems.code == 0, stems.stderr
    assert len(stems.json()["clips"]) == 4
    bad = await cli("edit", "effect", clip, "--effect", "Gain", "--gain-db", "99")
    assert bad.code == 2


@pytest.mark.anyio
async def test_download_by_jobid_and_by_clip_id(cli: Any, tmp_path: Path) -> None:
    """Finishing downloads later (after a crash, or on another machine) by id."""
    song = (await cli("--json", "generate", "synth pop")).json()
    by_job = await cli(
        "--json",
        "download",
        song["jobid"],
        "--out",
        str(tmp_path / "a"),
        "--formats",
        "m4a,mp3,image",
    )
    assert by_job.code == 0, by_job.stderr
    suffixes = {Path(p).suffix for p in by_job.json()["files"]}
    assert {".m4a", ".mp3", ".json"} <= suffixes
    clip = song["clips"][0]["clip"]
    by_clip = await cli("download", clip, "--out", str(tmp_path / "b"), "--formats", "mp3,m4a")
    assert by_clip.code == 0, by_clip.stderr
    assert list((tmp_path / "b").glob("*.mp3")) and list((tmp_path / "b").glob("*.m4a"))
    unknown = await cli("download", "user:1-x@example.com-clip:0000", "--out", str(tmp_path))
    assert unknown.code == 1


@pytest.mark.anyio
async def test_no_token_exits_3_and_names_the_variable(
    cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scripts must be able to tell "no credentials" from "a song failed"."""
    monkeypatch.delenv("USEAPI_TOKEN", raising=False)
    result = await cli("jobs", "list", base=False)
    assert result.code == 3
    assert "USEAPI_TOKEN" in result.stderr


@pytest.mark.anyio
async def test_rejected_token_exits_3_and_is_not_printed(cli: Any) -> None:
    """A 401 maps to exit 3, and the wrong token is not echoed in the error."""
    result = await cli("--json", "accounts", "list", token="user:999-WrongSecretToken")
    assert result.code == 3
    assert result.json()["error"]["type"] == "AuthenticationError"


@pytest.mark.anyio
async def test_no_credits_exits_4(cli: Any, sim: Simulator) -> None:
    """Out of credits is a human's problem (exit 4), not a retryable failure."""
    for email in ("alpha@example.com", "beta@example.com"):
        sim.set_credits(email, 0)
    result = await cli("generate", "anything")
    assert result.code == 4, result.stderr


@pytest.mark.anyio
async def test_batch_with_every_account_broken_exits_4(
    cli: Any, sim: Simulator, tmp_path: Path
) -> None:
    """A batch that cannot run anywhere stops with exit 4 and says why."""
    for email in ("alpha@example.com", "beta@example.com"):
        sim.set_account_error(email, "refresh token rejected")
    batch = tmp_path / "songs.txt"
    batch.write_text("one\ntwo\n")
    result = await cli("batch", str(batch), "--progress", "off")
    assert result.code == 4, result.stderr


@pytest.mark.anyio
async def test_uncertain_submission_exits_5(cli: Any, sim: Simulator) -> None:
    """When a POST's answer is lost and the job cannot be looked up, the user must check by hand."""
    sim.faults.lost_response_rate = 1.0
    sim.faults.error_rate = {"GET /jobs": 1.0, "GET /music": 1.0}
    result = await cli("generate", "anything", "--timeout", "1")
    assert result.code == 5, result.stderr


@pytest.mark.anyio
async def test_failed_job_exits_1_and_json_carries_the_job_record() -> None:
    """A song that ends failed is exit 1, and machines get the record that says why."""
    sim_failing = Simulator(
        accounts=(SimAccount(email="x@example.com", max_jobs=1),),
        time_scale=SCALE,
        job_failure_rate=1.0,
    )
    stdout, stderr = io.StringIO(), io.StringIO()
    code = await run(
        [
            "--token",
            sim_failing.token,
            "--base-url",
            sim_failing.base_url,
            "--time-scale",
            str(SCALE),
            "--json",
            "generate",
            "doomed",
        ],
        transport=sim_failing.transport(),
        stdout=stdout,
        stderr=stderr,
    )
    assert code == 1
    error = json.loads(stdout.getvalue())["error"]
    assert error["type"] == "JobFailed"
    assert error["job"]["status"] == "failed"
    assert sim_failing.token not in stdout.getvalue() + stderr.getvalue()


@pytest.mark.anyio
async def test_generate_timeout_exits_1_and_leaves_the_job_running(cli: Any) -> None:
    """--timeout gives up waiting, not the job: the message says so and shows the jobid."""
    result = await cli("generate", "slow song", "--timeout", "0.001")
    assert result.code == 1
    assert "still running" in result.stderr and "job:" in result.stderr


@pytest.mark.anyio
async def test_cli_works_without_rich(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rich is an optional extra: without it, even --progress rich falls back to plain text."""
    monkeypatch.setitem(sys.modules, "rich", None)  # makes `import rich` raise ImportError
    batch = tmp_path / "songs.txt"
    batch.write_text("one\n")
    result = await cli("batch", str(batch), "--progress", "rich")
    assert result.code == 0, result.stderr
    assert "[1/1] ok" in result.stderr
