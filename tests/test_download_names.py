"""Download file names are unique per clip, and "already downloaded" means this clip's bytes
are there as its sidecar records them; judged by the files on disk."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest
from mock_api import TOKEN

from flowmusic_async import FlowMusic
from flowmusic_async._download import safe_stem
from flowmusic_async._models import Clip, Job

pytestmark = pytest.mark.anyio

CDN = "https://cdn.example"
JOBID = "job:5555-user:1001-a@example.com-bot:flowmusic"
# Time-ordered uuids made within a minute share their first 8 hex digits.
CLIP_1 = "user:1001-a@example.com-clip:0190abcd-1111-7111-8111-111111111111"
CLIP_2 = "user:1001-a@example.com-clip:0190abcd-2222-7222-8222-222222222222"
CLIP_3 = "user:1001-a@example.com-clip:0190abcd-3333-7333-8333-333333333333"


def clip(clip_id: str, title: str = "Night Drive") -> Clip:
    return Clip(clip=clip_id, title=title, audio_url=f"{CDN}/{clip_id[-4:]}.m4a?sig=1")


def job(*clips: Clip, jobid: str = JOBID) -> Job:
    return Job(jobid=jobid, email="a@example.com", status="completed", clips=clips)


def bytes_of(tag: str) -> bytes:
    return f"audio of clip {tag} ".encode() * 100


class CDNServer:
    """Serves each clip's own bytes; counts requests."""

    def __init__(self) -> None:
        self.requests: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(str(request.url))
        tag = request.url.path.strip("/").split(".")[0]
        return httpx.Response(200, content=bytes_of(tag), headers={"Content-Type": "audio/mp4"})


def sidecars(folder: Path) -> dict[str, dict[str, object]]:
    return {p.name: json.loads(p.read_text()) for p in folder.glob("*.json")}


async def test_two_clips_sharing_title_and_id_prefix_get_their_own_files(tmp_path: Path) -> None:
    """Both clips are saved, each under its own name, each sidecar describing its own clip."""
    assert safe_stem("Night Drive", CLIP_1) == safe_stem("Night Drive", CLIP_2)  # the trap
    cdn = CDNServer()
    async with FlowMusic(token=TOKEN, transport=httpx.MockTransport(cdn)) as fm:
        paths = await fm.download(job(clip(CLIP_1), clip(CLIP_2)), tmp_path)
    media = [p for p in paths if p.suffix == ".m4a"]
    assert len(media) == 2 and media[0] != media[1]
    assert media[0].read_bytes() == bytes_of("1111")
    assert media[1].read_bytes() == bytes_of("2222")
    described = {doc["clip"]: doc["files"] for doc in sidecars(tmp_path).values()}
    assert set(described) == {CLIP_1, CLIP_2}
    for clip_id, path in ((CLIP_1, media[0]), (CLIP_2, media[1])):
        assert described[clip_id]["m4a"]["name"] == path.name  # type: ignore[index]

    # A rerun finds each clip's files again: nothing is fetched, nothing renamed.
    cdn.requests.clear()
    async with FlowMusic(token=TOKEN, transport=httpx.MockTransport(cdn)) as fm:
        again = await fm.download(job(clip(CLIP_1), clip(CLIP_2)), tmp_path)
    assert cdn.requests == []
    assert again == paths


async def test_a_clip_of_another_job_does_not_take_over_a_name_in_use(tmp_path: Path) -> None:
    """A later job's clip with the same title and prefix keeps the earlier clip's file intact."""
    cdn = CDNServer()
    async with FlowMusic(token=TOKEN, transport=httpx.MockTransport(cdn)) as fm:
        (first, _) = await fm.download(job(clip(CLIP_1)), tmp_path)
        (second, _) = await fm.download(job(clip(CLIP_3), jobid=JOBID + "-2"), tmp_path)
    assert first != second
    assert first.read_bytes() == bytes_of("1111")
    assert second.read_bytes() == bytes_of("3333")
    assert {doc["clip"] for doc in sidecars(tmp_path).values()} == {CLIP_1, CLIP_3}


async def test_a_file_at_the_name_without_this_clips_sidecar_is_downloaded_again(
    tmp_path: Path,
) -> None:
    """A file of the right name proves nothing: only the sidecar says whose bytes it holds."""
    name = safe_stem("Night Drive", CLIP_1) + ".m4a"
    (tmp_path / name).write_bytes(b"someone else's song")
    cdn = CDNServer()
    async with FlowMusic(token=TOKEN, transport=httpx.MockTransport(cdn)) as fm:
        (path, _) = await fm.download(job(clip(CLIP_1)), tmp_path)
    assert len(cdn.requests) == 1
    assert path.read_bytes() == bytes_of("1111")


async def test_a_symlink_at_the_target_name_is_not_already_downloaded(tmp_path: Path) -> None:
    """Even with a sidecar vouching for its name and size, a symlink is replaced, not trusted,
    and the file it points to is left alone."""
    folder = tmp_path / "songs"
    folder.mkdir()
    elsewhere = tmp_path / "elsewhere.m4a"
    elsewhere.write_bytes(bytes_of("9999"))  # same size as the clip's bytes
    stem = safe_stem("Night Drive", CLIP_1)
    os.symlink(elsewhere, folder / f"{stem}.m4a")
    size = len(bytes_of("1111"))
    (folder / f"{stem}.json").write_text(
        json.dumps({"clip": CLIP_1, "files": {"m4a": {"name": f"{stem}.m4a", "size": size}}})
    )
    cdn = CDNServer()
    async with FlowMusic(token=TOKEN, transport=httpx.MockTransport(cdn)) as fm:
        (path, _) = await fm.download(job(clip(CLIP_1)), folder)
    assert len(cdn.requests) == 1
    assert not path.is_symlink()
    assert path.read_bytes() == bytes_of("1111")
    assert elsewhere.read_bytes() == bytes_of("9999")


async def test_a_file_of_the_wrong_size_is_downloaded_again(tmp_path: Path) -> None:
    """The sidecar's recorded size is checked: a truncated file is not 'already there'."""
    cdn = CDNServer()
    async with FlowMusic(token=TOKEN, transport=httpx.MockTransport(cdn)) as fm:
        (path, _) = await fm.download(job(clip(CLIP_1)), tmp_path)
        path.write_bytes(b"cut")
        await fm.download(job(clip(CLIP_1)), tmp_path)
    assert len(cdn.requests) == 2
    assert path.read_bytes() == bytes_of("1111")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('attachment; filename="../../../tmp/owned.mp3"', "owned.mp3"),
        ("attachment; filename*=UTF-8''..%2F..%2Fetc%2Fowned.mp3", "owned.mp3"),
        ('attachment; filename="..\\\\..\\\\win.mp3"', "win.mp3"),
        ('attachment; filename=".."', None),
        ('attachment; filename="c1.mp3"', "c1.mp3"),
    ],
)
async def test_the_servers_file_name_comes_back_as_a_safe_base_name(
    header: str, expected: str | None
) -> None:
    """DownloadStream.filename never hands user code a path that leaves its folder."""

    def handler(request: httpx.Request) -> httpx.Response:
        headers = {"Content-Type": "audio/mpeg", "Content-Disposition": header}
        return httpx.Response(200, content=b"ID3", headers=headers)

    async with (
        FlowMusic(token=TOKEN, transport=httpx.MockTransport(handler)) as fm,
        fm.music.download(CLIP_1) as stream,
    ):
        assert stream.filename == expected
