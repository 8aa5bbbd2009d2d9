"""Downloads: atomic files, skipping complete ones, retries, expired URLs, safe names, sidecars."""

from __future__ import annotations

import hashlib
import json
import os
import time
import unicodedata
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from pathlib import Path
from typing import Any, cast

import anyio
import httpx
import msgspec
import pytest

from flowmusic_async import _download
from flowmusic_async._bodies import DEFAULT_MAX_DOWNLOAD_BYTES
from flowmusic_async._download import DownloadAPI, download, safe_stem, short_clip_id
from flowmusic_async._errors import (
    DecodeError,
    PermissionDeniedError,
    TransportError,
    ValidationError,
)
from flowmusic_async._models import Clip, Job
from flowmusic_async._resources import DownloadStream
from flowmusic_async._retry import RetryPolicy
from flowmusic_async.testing import Simulator, instant_retries

pytestmark = pytest.mark.anyio

CDN = "https://cdn.example"
CLIP_A = "user:1001-a@example.com-clip:0a1b2c3d-1111-4111-8111-111111111111"
CLIP_B = "user:1001-a@example.com-clip:9f8e7d6c-2222-4222-8222-222222222222"
M4A = b"m4a-bytes " * 500
WAV = b"RIFF....WAVE" * 400
PNG = b"\x89PNG\r\n\x1a\n" + b"p" * 300
MP3 = b"ID3" + b"m" * 700

Handler = Callable[[httpx.Request], httpx.Response]


def make_clip(clip: str = CLIP_A, title: str | None = "Night Drive", version: int = 1) -> Clip:
    tag = clip[-4:]
    return Clip(
        clip=clip,
        title=title,
        duration_s=173.03,
        lyrics="neon lights",
        seed=42,
        lyrics_timing=((0.0, 1.5), (1.5, 3.0)),
        audio_url=f"{CDN}/{tag}.m4a?sig=v{version}",
        wav_url=f"{CDN}/{tag}.wav?sig=v{version}",
        image_url=f"{CDN}/{tag}.png?sig=v{version}",
    )


def make_job(*clips: Clip) -> Job:
    return Job(
        jobid="job:5555-user:1001-a@example.com-bot:flowmusic",
        email="a@example.com",
        status="completed",
        clips=clips or (make_clip(),),
        request={"prompt": "synthwave at night", "mode": "async"},
    )


class Media:
    """A fake CDN: answers by file extension unless a route for the exact URL overrides it."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.routes: dict[str, list[Handler]] = {}

    def queue(self, url: str, *handlers: Handler) -> None:
        self.routes.setdefault(url, []).extend(handlers)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        pending = self.routes.get(str(request.url))
        if pending:
            return pending.pop(0)(request)
        path = request.url.path
        for suffix, body, kind in ((".m4a", M4A, "audio/mp4"), (".wav", WAV, "audio/wav")):
            if path.endswith(suffix):
                return httpx.Response(200, content=body, headers={"Content-Type": kind})
        return httpx.Response(200, content=PNG, headers={"Content-Type": "image/png"})


class FakeStream:
    def __init__(self, body: bytes) -> None:
        self.filename = "clip.mp3"
        self.content_type = "audio/mpeg"
        self.content_length = len(body)
        self._body = body

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        yield self._body[:100]
        yield self._body[100:]


class FakeMusic:
    def __init__(self) -> None:
        self.downloads: list[str] = []

    @asynccontextmanager
    async def download(self, id: str, *, format: str = "mp3") -> AsyncIterator[FakeStream]:
        self.downloads.append(id)
        yield FakeStream(MP3)


class FakeJobs:
    def __init__(self, fresh: Job | None = None) -> None:
        self.fresh = fresh
        self.gets: list[str] = []

    async def get(self, jobid: str) -> Job:
        self.gets.append(jobid)
        assert self.fresh is not None, "jobs.get was not expected"
        return self.fresh


class FakeFM:
    """The whole `DownloadAPI`, and nothing of FlowMusic's private state.

    Three retries (four attempts per file), as the tests below count them.
    """

    def __init__(self, client: httpx.AsyncClient, fresh: Job | None = None) -> None:
        self.client = client
        self.retry_policy = RetryPolicy(max_retries=3, base=0.5, cap=8.0)
        self.max_download_bytes = DEFAULT_MAX_DOWNLOAD_BYTES
        self.media_deadline: float | None = None
        self.jobs = FakeJobs(fresh)
        self.music = FakeMusic()

    def media_client(self) -> AbstractAsyncContextManager[httpx.AsyncClient]:
        return nullcontext(self.client)

    async def get_job(self, jobid: str) -> Job:
        return await self.jobs.get(jobid)

    def open_mp3(self, clip_id: str) -> AbstractAsyncContextManager[DownloadStream]:
        return cast("AbstractAsyncContextManager[DownloadStream]", self.music.download(clip_id))


def fake_fm(client: httpx.AsyncClient, fresh: Job | None = None) -> DownloadAPI:
    return FakeFM(client, fresh)


@pytest.fixture
def media() -> Media:
    return Media()


@pytest.fixture
async def client(media: Media) -> AsyncIterator[httpx.AsyncClient]:
    # A client-wide Authorization default proves download() strips it from media requests.
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(media), headers={"Authorization": "Bearer user:1-secret"}
    ) as client:
        yield client


@pytest.fixture
def download_sleeps() -> Iterator[list[float]]:
    """Backoff sleeps recorded instead of slept, so retry tests take no time."""
    with instant_retries() as delays:
        yield delays


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


class BrokenBody(httpx.AsyncByteStream):
    """Sends part of the body, then the connection drops."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield M4A[:1000]
        raise httpx.ReadError("connection reset by peer")


def broken(_: httpx.Request) -> httpx.Response:
    return httpx.Response(200, headers={"Content-Length": str(len(M4A))}, stream=BrokenBody())


def status(code: int) -> Handler:
    return lambda _: httpx.Response(code, json={"error": f"status {code}", "code": code})


async def test_job_clips_saved_with_predictable_names_and_sidecars(
    tmp_path: Path, client: httpx.AsyncClient, media: Media
) -> None:
    """The main job's output: every clip's files under names a user can predict, plus metadata."""
    job = make_job(make_clip(CLIP_A, "Night Drive"), make_clip(CLIP_B, "Night Drive"))
    fake = FakeFM(client)
    paths = await download(fake, job, tmp_path / "out", formats=("m4a", "wav", "mp3", "image"))

    out = tmp_path / "out"
    assert [p.name for p in paths] == [
        "Night Drive-0a1b2c3d.m4a",
        "Night Drive-0a1b2c3d.wav",
        "Night Drive-0a1b2c3d.mp3",
        "Night Drive-0a1b2c3d.png",
        "Night Drive-0a1b2c3d.json",
        "Night Drive-9f8e7d6c.m4a",
        "Night Drive-9f8e7d6c.wav",
        "Night Drive-9f8e7d6c.mp3",
        "Night Drive-9f8e7d6c.png",
        "Night Drive-9f8e7d6c.json",
    ]
    assert leftovers(out) == sorted(p.name for p in paths)
    assert (out / "Night Drive-0a1b2c3d.m4a").read_bytes() == M4A
    assert (out / "Night Drive-0a1b2c3d.wav").read_bytes() == WAV
    assert (out / "Night Drive-0a1b2c3d.mp3").read_bytes() == MP3
    assert (out / "Night Drive-0a1b2c3d.png").read_bytes() == PNG
    assert fake.music.downloads == [CLIP_A, CLIP_B]
    # Media URLs are public: the API token must never travel to a CDN.
    assert media.requests
    assert all("authorization" not in r.headers for r in media.requests)


async def test_sidecar_records_clip_metadata_and_files(
    tmp_path: Path, client: httpx.AsyncClient
) -> None:
    """The sidecar is how a user later knows what a file is and whether it is intact."""
    await download(fake_fm(client), make_job(), tmp_path, formats=("m4a", "image"))
    sidecar = json.loads((tmp_path / "Night Drive-0a1b2c3d.json").read_text())
    assert sidecar == {
        "clip": CLIP_A,
        "jobid": "job:5555-user:1001-a@example.com-bot:flowmusic",
        "email": "a@example.com",
        "prompt": "synthwave at night",
        "title": "Night Drive",
        "lyrics": "neon lights",
        "lyrics_timing": [[0.0, 1.5], [1.5, 3.0]],
        "seed": 42,
        "duration_s": 173.03,
        "files": {
            "m4a": {
                "name": "Night Drive-0a1b2c3d.m4a",
                "size": len(M4A),
                "sha256": hashlib.sha256(M4A).hexdigest(),
            },
            "image": {
                "name": "Night Drive-0a1b2c3d.png",
                "size": len(PNG),
                "sha256": hashlib.sha256(PNG).hexdigest(),
            },
        },
    }


async def test_existing_complete_files_are_skipped_without_requests(
    tmp_path: Path, client: httpx.AsyncClient, media: Media
) -> None:
    """Re-running a finished download must cost nothing: no request, same paths."""
    fake = FakeFM(client)
    first = await download(fake, make_job(), tmp_path, formats=("m4a", "wav", "mp3", "image"))
    media.requests.clear()
    fake.music.downloads.clear()
    sidecar_before = (tmp_path / "Night Drive-0a1b2c3d.json").read_bytes()

    again = await download(fake, make_job(), tmp_path, formats=("m4a", "wav", "mp3", "image"))

    assert again == first
    assert media.requests == []
    assert fake.music.downloads == []
    assert (tmp_path / "Night Drive-0a1b2c3d.json").read_bytes() == sidecar_before


async def test_file_whose_size_disagrees_with_sidecar_is_downloaded_again(
    tmp_path: Path, client: httpx.AsyncClient, media: Media
) -> None:
    """A damaged file must not be trusted just because it exists under its final name."""
    await download(fake_fm(client), make_job(), tmp_path)
    target = tmp_path / "Night Drive-0a1b2c3d.m4a"
    target.write_bytes(M4A[:10])
    media.requests.clear()

    await download(fake_fm(client), make_job(), tmp_path)

    assert len(media.requests) == 1
    assert target.read_bytes() == M4A


async def test_interrupted_stream_leaves_no_file_and_no_temp(
    tmp_path: Path, client: httpx.AsyncClient, media: Media, download_sleeps: list[float]
) -> None:
    """A half-written file under the final name would later be skipped as complete."""
    clip = make_clip()
    assert clip.audio_url is not None
    media.queue(clip.audio_url, *[broken] * 4)

    with pytest.raises(TransportError, match="ReadError"):
        await download(fake_fm(client), make_job(clip), tmp_path)

    assert len(media.requests) == 4  # retried with backoff before giving up
    assert len(download_sleeps) == 3
    assert leftovers(tmp_path) == []


async def test_transient_failures_are_retried_with_backoff(
    tmp_path: Path, client: httpx.AsyncClient, media: Media, download_sleeps: list[float]
) -> None:
    """A CDN hiccup (5xx, dropped body) must not fail a batch that already paid for the song."""
    clip = make_clip()
    assert clip.audio_url is not None
    media.queue(clip.audio_url, status(503), broken)

    [path, _] = await download(fake_fm(client), make_job(clip), tmp_path)

    assert path.read_bytes() == M4A
    assert len(download_sleeps) == 2
    assert all(0 <= s <= 8 for s in download_sleeps)


async def test_short_body_is_not_accepted_as_complete(
    tmp_path: Path, client: httpx.AsyncClient, media: Media, download_sleeps: list[float]
) -> None:
    """A body shorter than its Content-Length is a truncated download, not a song."""
    clip = make_clip()
    assert clip.audio_url is not None
    short = httpx.Response(200, headers={"Content-Length": str(len(M4A))}, content=M4A[:50])
    media.queue(clip.audio_url, lambda _: short)

    [path, _] = await download(fake_fm(client), make_job(clip), tmp_path)

    assert path.read_bytes() == M4A
    assert len(download_sleeps) == 1


@pytest.mark.parametrize("code", [429, 503])
async def test_a_cdn_refusal_is_retried_after_its_retry_after(
    tmp_path: Path, client: httpx.AsyncClient, media: Media, download_sleeps: list[float], code: int
) -> None:
    """A CDN that says when to come back is believed: sooner only earns another refusal."""
    clip = make_clip()
    assert clip.audio_url is not None
    refusal = httpx.Response(code, headers={"Retry-After": "5"}, text="slow down")
    media.queue(clip.audio_url, lambda _: refusal)

    [path, _] = await download(fake_fm(client), make_job(clip), tmp_path)

    assert path.read_bytes() == M4A
    assert download_sleeps == [5]


def refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


async def test_refused_connections_are_retried_for_the_connect_budget_not_max_retries(
    tmp_path: Path, client: httpx.AsyncClient, media: Media, download_sleeps: list[float]
) -> None:
    """A CDN restarting refuses connections for a while: that costs time, not max_retries."""
    clip = make_clip()
    assert clip.audio_url is not None
    media.queue(clip.audio_url, *[refused] * 6)
    fake = FakeFM(client)  # max_retries=3
    fake.retry_policy.contact.note()  # the API answered: the 30 s outage budget applies

    [path, _] = await download(fake, make_job(clip), tmp_path)

    assert path.read_bytes() == M4A
    assert len(media.requests) == 7 and len(download_sleeps) == 6


async def test_a_spent_connect_budget_ends_a_download_after_one_try(
    tmp_path: Path, client: httpx.AsyncClient, media: Media, download_sleeps: list[float]
) -> None:
    """Once a request gave up on a never-reached API, a download tries once, as requests do."""
    clip = make_clip()
    assert clip.audio_url is not None
    media.queue(clip.audio_url, *[refused] * 4)
    fake = FakeFM(client)
    fake.retry_policy.contact.give_up()

    with pytest.raises(TransportError, match="not sent"):
        await download(fake, make_job(clip), tmp_path)

    assert len(media.requests) == 1 and download_sleeps == []
    assert leftovers(tmp_path) == []


async def test_cancelled_download_removes_its_temp_file(
    tmp_path: Path, client: httpx.AsyncClient, media: Media
) -> None:
    """Ctrl-C mid-download must leave the folder as it was, not littered with partial files."""
    clip = make_clip()
    assert clip.audio_url is not None
    started = anyio.Event()

    class Stalls(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield M4A[:1000]
            started.set()
            await anyio.sleep_forever()
            yield b""  # pragma: no cover

    media.queue(clip.audio_url, lambda _: httpx.Response(200, stream=Stalls()))
    async with anyio.create_task_group() as tg:
        tg.start_soon(download, fake_fm(client), make_job(clip), tmp_path)
        with anyio.fail_after(5):
            await started.wait()
        assert any(name.endswith(".part") for name in leftovers(tmp_path))
        tg.cancel_scope.cancel()
    assert leftovers(tmp_path) == []


async def test_expired_url_is_refreshed_through_the_job_and_retried(
    tmp_path: Path, client: httpx.AsyncClient, media: Media
) -> None:
    """Signed links expire; a batch saving songs later must fetch fresh links, not fail."""
    stale, fresh = make_clip(version=1), make_clip(version=2)
    assert stale.audio_url is not None and fresh.audio_url is not None
    media.queue(stale.audio_url, status(403))
    fake = FakeFM(client, fresh=make_job(fresh))

    [path, _] = await download(fake, make_job(stale), tmp_path)

    assert path.read_bytes() == M4A
    assert fake.jobs.gets == ["job:5555-user:1001-a@example.com-bot:flowmusic"]
    assert [str(r.url) for r in media.requests] == [stale.audio_url, fresh.audio_url]


async def test_expired_url_is_refreshed_only_once(
    tmp_path: Path, client: httpx.AsyncClient, media: Media
) -> None:
    """If fresh links are refused too, give up with the server's answer instead of looping."""
    stale, fresh = make_clip(version=1), make_clip(version=2)
    assert stale.audio_url is not None and fresh.audio_url is not None
    media.queue(stale.audio_url, status(410))
    media.queue(fresh.audio_url, status(403))
    fake = FakeFM(client, fresh=make_job(fresh))

    with pytest.raises(PermissionDeniedError):
        await download(fake, make_job(stale), tmp_path)

    assert len(fake.jobs.gets) == 1
    assert leftovers(tmp_path) == []


async def test_expired_url_of_a_bare_clip_needs_a_jobid(
    tmp_path: Path, client: httpx.AsyncClient, media: Media
) -> None:
    """Without a jobid there is nowhere to get fresh links; the 403 must surface, not hang."""
    clip = make_clip()
    assert clip.audio_url is not None
    media.queue(clip.audio_url, status(403))
    with pytest.raises(PermissionDeniedError):
        await download(fake_fm(client), clip, tmp_path)


async def test_image_type_from_content_type_when_url_has_no_extension(
    tmp_path: Path, client: httpx.AsyncClient, media: Media
) -> None:
    """Cover art must open in an image viewer, and a rerun must still find it via the sidecar."""
    clip = make_clip()
    clip = Clip(clip=clip.clip, title=clip.title, image_url=f"{CDN}/art/42?sig=1")
    webp = b"RIFF\x00\x00\x00\x00WEBPVP8 "
    media.queue(
        f"{CDN}/art/42?sig=1",
        lambda _: httpx.Response(200, content=webp, headers={"Content-Type": "image/webp"}),
    )
    [image, sidecar] = await download(fake_fm(client), clip, tmp_path, formats=["image"])
    assert image.name == "Night Drive-0a1b2c3d.webp"
    assert json.loads(sidecar.read_text())["email"] == "a@example.com"  # from the clip id
    assert image.read_bytes() == webp

    media.requests.clear()
    [again, _] = await download(fake_fm(client), clip, tmp_path, formats=["image"])
    assert again == image
    assert media.requests == []


async def test_bad_arguments_are_refused_before_any_request(
    tmp_path: Path, client: httpx.AsyncClient, media: Media
) -> None:
    """A typo in formats, or a job without clips yet, must fail fast and clearly."""
    with pytest.raises(ValidationError, match="flac"):
        await download(fake_fm(client), make_job(), tmp_path, formats=("flac",))
    pending = Job(jobid="job:1", email="a@example.com", status="pending")
    with pytest.raises(ValidationError, match="pending"):
        await download(fake_fm(client), pending, tmp_path)
    assert media.requests == []


NASTY_TITLES = [
    "AC/DC: Back in <Black>?",
    "CON",
    "nul.txt",
    "Com1",
    "lpt9 ",
    "   ...   ",
    None,
    "",
    "trailing dots...",
    ".hidden",
    "tab\there\nnewline\x00nul\x7fdel",
    'pipe|star*quote"back\\slash',
    "\u202eexe.mp3",
    "x" * 300,
    "é" * 100,
    "😀" * 100,
    "e\u0301 decomposed",
]


@pytest.mark.parametrize("title", NASTY_TITLES)
def test_file_names_are_safe_on_every_os(title: str | None) -> None:
    """A title written by a model must never produce a name some OS refuses or misreads."""
    stem = safe_stem(title, CLIP_A)
    name_part, _, short = stem.rpartition("-")
    assert short == "0a1b2c3d"
    assert name_part
    assert not any(ch in stem for ch in '<>:"/\\|?*')
    assert not any(unicodedata.category(ch) in {"Cc", "Cf"} for ch in stem)
    assert name_part == name_part.strip(" .")
    assert name_part.split(".")[0].upper() not in {"CON", "PRN", "AUX", "NUL", "COM1", "LPT9"}
    assert len(name_part) <= 80
    assert len(f"{stem}.json".encode()) <= 255
    assert stem == unicodedata.normalize("NFC", stem)


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("AC/DC: Back in <Black>?", "AC DC Back in Black-0a1b2c3d"),
        ("CON", "_CON-0a1b2c3d"),
        ("trailing dots...", "trailing dots-0a1b2c3d"),
        (None, "untitled-0a1b2c3d"),
        ("  Night   Drive ", "Night Drive-0a1b2c3d"),
    ],
)
def test_file_names_are_predictable(title: str | None, expected: str) -> None:
    """Users and scripts look files up by name; the rule must give the obvious answer."""
    assert safe_stem(title, CLIP_A) == expected


def test_short_clip_id_is_the_uuid_prefix_or_a_stable_hash() -> None:
    """Two clips with one title must not collide, and an odd id must still give a stable name."""
    assert short_clip_id(CLIP_A) == "0a1b2c3d"
    assert short_clip_id("user:1-a@example.com-clip:ABCDEF01-x") == "abcdef01"
    odd = short_clip_id("no-marker-here")
    assert len(odd) == 8
    assert odd == short_clip_id("no-marker-here")


async def test_end_to_end_against_the_simulator_with_expired_links(tmp_path: Path) -> None:
    """The real client, simulator media and signed-URL expiry together, as a user runs them."""
    # Links live an hour of simulated time (3.6 s real), so a loaded machine cannot see a
    # refreshed link expire again before it is used.
    sim = Simulator(time_scale=0.001, seed=3, media_url_ttl_s=3600.0)
    async with sim.client() as fm:
        with anyio.fail_after(10):
            job = await fm.generate("lofi beats to test by")
        sim.advance(7200)  # every signed link in `job` is now expired
        polls_before = sim.stats.requests[("GET /jobs/{jobid}", 200)]
        paths = await fm.download(job, tmp_path, formats=("m4a", "wav", "mp3", "image"))
        requests_after_first = sum(sim.stats.requests.values())
        again = await fm.download(job, tmp_path, formats=("m4a", "wav", "mp3", "image"))

    # One refused link, one job refresh that renewed the links of every clip, nothing repeated.
    assert sim.stats.requests[("GET /_sim/media/{file}", 403)] == 1
    assert sim.stats.requests[("GET /jobs/{jobid}", 200)] == polls_before + 1
    assert sum(sim.stats.requests.values()) == requests_after_first

    assert again == paths
    assert len(paths) == 5 * len(job.clips) and job.clips
    by_suffix = {p.suffix: p.read_bytes() for p in paths}
    assert by_suffix[".wav"][:4] == b"RIFF"
    assert by_suffix[".jpg"][:3] == b"\xff\xd8\xff"  # the simulator's cover art is a JPEG
    assert by_suffix[".mp3"][:3] == b"ID3"
    assert by_suffix[".m4a"][4:8] == b"ftyp"
    sidecar = json.loads(paths[4].read_text())
    assert sidecar["jobid"] == job.jobid
    assert sidecar["prompt"] == "lofi beats to test by"
    assert set(sidecar["files"]) == {"m4a", "wav", "mp3", "image"}
    assert leftovers(tmp_path) == sorted(p.name for p in paths)


@pytest.mark.parametrize(
    "bad_url",
    [
        "http://[::1",
        "https://cdn.example/a song.m4a",
        "https://cdn.example/" + "x" * 20_000 + ".m4a",
        "ftp://cdn.example/a.m4a",
        "https:///no-host.m4a",
    ],
    ids=["unclosed-ipv6", "space", "over-long", "ftp", "no-host"],
)
async def test_unfetchable_media_url_is_a_decode_error_naming_the_clip(
    tmp_path: Path,
    client: httpx.AsyncClient,
    media: Media,
    download_sleeps: list[float],
    bad_url: str,
) -> None:
    """A broken URL in an answer is a broken answer: typed, named, not retried, nothing sent."""
    clip = msgspec.structs.replace(make_clip(), audio_url=bad_url)

    with pytest.raises(DecodeError, match=r"clip .*clip:0a1b2c3d.*audio_url") as caught:
        await download(fake_fm(client), make_job(clip), tmp_path)

    assert "x" * 300 not in str(caught.value)  # the message does not quote a huge URL
    assert media.requests == []
    assert download_sleeps == []
    assert leftovers(tmp_path) == []


async def test_a_big_body_in_small_chunks_costs_few_thread_hops(
    tmp_path: Path, media: Media, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each hop to a worker thread costs CPU: a 3 MiB body arriving in 4 KiB chunks is
    written a MiB at a time, not 768 times, and still arrives whole."""
    big = os.urandom(3 * 2**20 + 123)
    url = make_clip().audio_url

    async def parts() -> AsyncIterator[bytes]:
        for i in range(0, len(big), 4096):
            yield big[i : i + 4096]

    def chunked(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=parts(), headers={"Content-Type": "audio/mp4"})

    media.queue(str(url), chunked)
    hops = 0
    run_sync = anyio.to_thread.run_sync

    async def counting(func: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal hops
        hops += 1
        return await run_sync(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
    [path] = await download(fake_fm(client), make_job(), tmp_path, sidecar=False)

    assert path.read_bytes() == big
    assert hops <= 8, hops  # mkdir, stale parts, create, 3 batches, the last write + rename


async def test_stale_parts_are_found_with_one_scan_per_folder(
    tmp_path: Path, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scanning the folder once per clip made a batch into one folder quadratic: clips after
    the first reuse the scan, and a folder is scanned again once parts can have gone stale."""
    scans: list[str] = []
    scandir = os.scandir

    def counting(path: Any) -> Any:
        scans.append(str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", counting)
    for i in range(5):
        clip = make_clip(f"clip:{i:04x}aaaa-user:1001-a@example.com", f"Song {i}")
        await download(fake_fm(client), make_job(clip), tmp_path, sidecar=False)
    assert scans.count(str(tmp_path)) == 1

    stem = safe_stem("Song 0", "clip:0000aaaa-user:1001-a@example.com")
    later = tmp_path / f".{stem}.l4t3r0.part"  # left by a process killed after the scan
    later.write_bytes(b"half")
    await _download._remove_stale_parts(tmp_path, stem)
    assert later.exists()  # young, and not rescanned yet
    much_later = time.time() + 2 * _download.STALE_PART_AGE_S
    await _download._remove_stale_parts(tmp_path, stem, now=much_later)
    assert not later.exists()
    assert scans.count(str(tmp_path)) == 2


async def test_rerun_removes_stale_part_files_of_the_same_target_only(
    tmp_path: Path, client: httpx.AsyncClient
) -> None:
    """A killed download leaves hidden .part files; the rerun must not let them pile up."""
    stem = safe_stem("Night Drive", CLIP_A)
    old = time.time() - _download.STALE_PART_AGE_S - 60
    stale = tmp_path / f".{stem}.k1ll3d.part"
    stale_sidecar = tmp_path / f".{stem}.s1d3c4r.part"
    live = tmp_path / f".{stem}.wr1t1ng.part"  # another process is writing it right now
    other = tmp_path / f".{safe_stem('Other', CLIP_B)}.0ld0ld.part"  # another target's
    for path in (stale, stale_sidecar, live, other):
        path.write_bytes(b"half")
    for path in (stale, stale_sidecar, other):
        os.utime(path, (old, old))

    await download(fake_fm(client), make_job(make_clip(CLIP_A, "Night Drive")), tmp_path)

    assert not stale.exists()
    assert not stale_sidecar.exists()
    assert live.exists()
    assert other.exists()


async def test_flowmusic_download_goes_through_the_download_api_only() -> None:
    """Modules talk through narrow interfaces: downloads must not reach FlowMusic's privates."""
    source = Path(_download.__file__).read_text()
    assert "fm._" not in source
    assert "._http" not in source
    assert "_MAX_TRIES" not in source  # one retry mechanism: the client's RetryPolicy
