"""Request builders: the exact bodies the API expects, and a named field for every refusal."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from flowmusic_async._errors import ValidationError
from flowmusic_async._validation import (
    account_add_body,
    account_limit_body,
    download_params,
    edit_body,
    guess_content_type,
    image_body,
    list_params,
    lyrics_body,
    music_body,
    upload_params,
)

CLIP = "user:1234-someone@example.com-clip:abc"
MIB = 1024 * 1024


def test_music_body_omits_unset_fields() -> None:
    """Unset fields must not be sent: the server's defaults apply only when a field is absent."""
    assert music_body("a calm piano piece") == {"prompt": "a calm piano piece"}


def test_music_body_maps_every_field_to_its_wire_name() -> None:
    """replyUrl/replyRef/refImageN are the API's names; a wrong key is silently ignored."""
    body = music_body(
        "p",
        instrumental=False,
        lyrics="[Verse]\nla la",
        ghostwriter="pro",
        ref_images=["img1", "img2"],
        ref_audios=["aud1"],
        model="lyria-3.5",
        email="a@example.com",
        mode="async",
        reply_url="https://hooks.example.com/x",
        reply_ref="ref-1",
    )
    assert body == {
        "prompt": "p",
        "instrumental": False,
        "lyrics": "[Verse]\nla la",
        "ghostwriter": "pro",
        "refImage1": "img1",
        "refImage2": "img2",
        "refAudio1": "aud1",
        "model": "lyria-3.5",
        "email": "a@example.com",
        "mode": "async",
        "replyUrl": "https://hooks.example.com/x",
        "replyRef": "ref-1",
    }


def test_ten_references_of_each_kind_are_allowed() -> None:
    """The limit is inclusive: refImage10 and refAudio10 exist."""
    body = music_body(
        "p", ref_images=[f"i{n}" for n in range(10)], ref_audios=[f"a{n}" for n in range(10)]
    )
    assert body["refImage10"] == "i9" and body["refAudio10"] == "a9"


def test_instrumental_without_lyrics_is_fine() -> None:
    """Only the contradictory combination is refused, not instrumental on its own."""
    assert music_body("p", instrumental=True)["instrumental"] is True


MUSIC_REFUSALS: list[tuple[dict[str, Any], str]] = [
    ({"prompt": ""}, "prompt"),
    ({"prompt": "   "}, "prompt"),
    ({"prompt": "x" * 10_001}, "prompt"),
    ({"prompt": 5}, "prompt"),
    ({"lyrics": "x" * 10_001}, "lyrics"),
    ({"instrumental": True, "lyrics": "[Verse] words"}, "lyrics"),
    ({"instrumental": "yes"}, "instrumental"),
    ({"ghostwriter": "deluxe"}, "ghostwriter"),
    ({"model": "lyria-4"}, "model"),
    ({"mode": "later"}, "mode"),
    ({"ref_images": [f"i{n}" for n in range(11)]}, "ref_images"),
    ({"ref_audios": [f"a{n}" for n in range(11)]}, "ref_audios"),
    ({"ref_images": "img1"}, "ref_images"),
    ({"ref_audios": [""]}, "ref_audios"),
    ({"email": "not-an-email"}, "email"),
    ({"reply_url": "ftp://example.com/x"}, "reply_url"),
    ({"reply_url": "https://example.com/" + "x" * 1100}, "reply_url"),
    ({"reply_ref": 7}, "reply_ref"),
]


@pytest.mark.parametrize(("kwargs", "field"), MUSIC_REFUSALS)
def test_music_body_refusals_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    """Each bad song parameter is refused locally and named, so the user can fix it."""
    kwargs = {"prompt": "p", **kwargs}
    with pytest.raises(ValidationError) as info:
        music_body(kwargs.pop("prompt"), **kwargs)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}:")


def test_prompt_of_exactly_10000_chars_is_allowed() -> None:
    """Off-by-one at the limit would refuse valid requests."""
    assert len(music_body("x" * 10_000)["prompt"]) == 10_000


@pytest.mark.parametrize(
    ("operation", "params", "expected"),
    [
        (
            "effect",
            {"effect": "Reverb", "mix": 0.4, "room_size": 0.7},
            {"effect": "Reverb", "mix": 0.4, "room_size": 0.7},
        ),
        (
            "effect",
            {"effect": "trim", "start_s": 0, "end_s": 12.5},
            {"effect": "Trim", "start_s": 0, "end_s": 12.5},
        ),
        ("effect", {"effect": "Fade", "fade_out_s": 3}, {"effect": "Fade", "fade_out_s": 3}),
        ("effect", {"effect": "Gain", "gain_db": -30}, {"effect": "Gain", "gain_db": -30}),
        ("effect", {"effect": "Pan", "pan": 1}, {"effect": "Pan", "pan": 1}),
        (
            "effect",
            {"effect": "Equalizer", "bass_db": 12, "treble_db": -12},
            {"effect": "Equalizer", "bass_db": 12, "treble_db": -12},
        ),
        (
            "extend",
            {"instruction": "add an instrumental outro", "extend_s": 30},
            {"instruction": "add an instrumental outro", "extend_s": 30},
        ),
        (
            "replace",
            {"instruction": "softer piano", "mask_start_s": 0, "mask_end_s": 8},
            {"instruction": "softer piano", "mask_start_s": 0, "mask_end_s": 8},
        ),
        (
            "cover",
            {"instruction": "lo-fi", "strength": 0.7},
            {"instruction": "lo-fi", "strength": 0.7},
        ),
        ("cover", {}, {}),
        (
            "remix",
            {"lyrics": "[Verse 1]\nla", "prompt": "dreamy synthwave, 100 bpm"},
            {"lyrics": "[Verse 1]\nla", "prompt": "dreamy synthwave, 100 bpm"},
        ),
        ("stems", {}, {}),
    ],
)
def test_edit_bodies_match_the_contract_examples(
    operation: str, params: dict[str, Any], expected: dict[str, Any]
) -> None:
    """Each operation's body must carry exactly its own flat fields (contract 8.8 examples)."""
    expected = {"operation": operation, "clip": CLIP, **expected}
    assert edit_body(operation, CLIP, **params) == expected


def test_edit_common_fields_and_none_omitted() -> None:
    """Common edit fields use wire names; None means "not set" and is left out."""
    body = edit_body(
        "extend",
        CLIP,
        instruction="more",
        seed=0,
        title="Longer",
        mode="async",
        reply_url="http://127.0.0.1:9/hook",
        reply_ref="r",
        model="lyria-3-pro",
        extend_s=None,
    )
    assert body == {
        "operation": "extend",
        "clip": CLIP,
        "instruction": "more",
        "seed": 0,
        "title": "Longer",
        "model": "lyria-3-pro",
        "mode": "async",
        "replyUrl": "http://127.0.0.1:9/hook",
        "replyRef": "r",
    }


EDIT_REFUSALS: list[tuple[str, dict[str, Any], str]] = [
    ("fly", {}, "operation"),
    ("effect", {}, "effect"),
    ("effect", {"effect": "Chorus"}, "effect"),
    ("effect", {"effect": "Gain"}, "gain_db"),
    ("effect", {"effect": "Gain", "gain_db": 30.5}, "gain_db"),
    ("effect", {"effect": "Gain", "gain_db": -31}, "gain_db"),
    ("effect", {"effect": "Gain", "gain_db": True}, "gain_db"),
    ("effect", {"effect": "Gain", "gain_db": float("nan")}, "gain_db"),
    ("effect", {"effect": "Gain", "gain_db": 3, "pan": 0.5}, "pan"),
    ("effect", {"effect": "Reverb"}, "mix"),
    ("effect", {"effect": "Reverb", "mix": 1.2}, "mix"),
    ("effect", {"effect": "Reverb", "room_size": -0.1}, "room_size"),
    ("effect", {"effect": "Pan", "pan": -1.5}, "pan"),
    ("effect", {"effect": "Equalizer", "mid_db": 13}, "mid_db"),
    ("effect", {"effect": "Equalizer"}, "bass_db"),
    ("effect", {"effect": "Fade"}, "fade_in_s"),
    ("effect", {"effect": "Fade", "fade_in_s": 0, "fade_out_s": 0}, "fade_in_s"),
    ("effect", {"effect": "Fade", "fade_in_s": -1, "fade_out_s": 2}, "fade_in_s"),
    ("effect", {"effect": "Trim", "start_s": 5, "end_s": 5}, "end_s"),
    ("effect", {"effect": "Trim", "end_s": 5}, "start_s"),
    ("effect", {"effect": "Trim", "start_s": -1, "end_s": 5}, "start_s"),
    ("effect", {"effect": "Gain", "gain_db": 1, "model": "lyria-3.5"}, "model"),
    ("extend", {}, "instruction"),
    ("extend", {"instruction": "  "}, "instruction"),
    ("extend", {"instruction": "x", "extend_s": 0.5}, "extend_s"),
    ("extend", {"instruction": "x", "extend_s": 301}, "extend_s"),
    ("extend", {"instruction": "x", "extend_from_s": -2}, "extend_from_s"),
    ("extend", {"instruction": "x", "strength": 0.5}, "strength"),
    ("replace", {"mask_start_s": 0, "mask_end_s": 8}, "instruction"),
    ("replace", {"instruction": "x", "mask_end_s": 8}, "mask_start_s"),
    ("replace", {"instruction": "x", "mask_start_s": 1}, "mask_end_s"),
    ("replace", {"instruction": "x", "mask_start_s": 8, "mask_end_s": 2}, "mask_end_s"),
    ("cover", {"strength": 1.01}, "strength"),
    ("cover", {"strength": -0.01}, "strength"),
    ("remix", {}, "lyrics"),
    ("remix", {"lyrics": "x" * 10_001}, "lyrics"),
    ("remix", {"lyrics": "la", "seed": -1}, "seed"),
    ("remix", {"lyrics": "la", "seed": 1.5}, "seed"),
    ("remix", {"lyrics": "la", "model": "lyria-9"}, "model"),
    ("remix", {"lyrics": "la", "mode": "batch"}, "mode"),
    ("stems", {"mode": "async"}, "mode"),
    ("stems", {"seed": 1}, "seed"),
]


@pytest.mark.parametrize(("operation", "params", "field"), EDIT_REFUSALS)
def test_edit_refusals_name_the_field(operation: str, params: dict[str, Any], field: str) -> None:
    """Every out-of-range or missing edit parameter is refused locally, naming the field."""
    with pytest.raises(ValidationError) as info:
        edit_body(operation, CLIP, **params)
    assert info.value.field == field


def test_edit_needs_a_clip() -> None:
    """An empty clip id can only earn a 400."""
    with pytest.raises(ValidationError) as info:
        edit_body("stems", "")
    assert info.value.field == "clip"


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: lyrics_body(""), "prompt"),
        (lambda: lyrics_body("x" * 2001), "prompt"),
        (lambda: lyrics_body("ok", structure="x" * 2001), "structure"),
        (lambda: image_body(""), "prompt"),
        (lambda: image_body("x" * 2001), "prompt"),
        (lambda: account_add_body("short"), "refresh_token"),
        (lambda: account_add_body("x" * 12, max_jobs=0), "max_jobs"),
        (lambda: account_add_body("x" * 12, max_jobs=17), "max_jobs"),
        (lambda: account_limit_body("a@example.com", 0), "max_jobs"),
        (lambda: account_limit_body("nobody", 3), "email"),
        (lambda: list_params(limit=0), "limit"),
        (lambda: list_params(limit=101), "limit"),
        (lambda: list_params(offset=-1), "offset"),
        (lambda: download_params("c", format="wav"), "format"),
        (lambda: download_params(""), "id"),
    ],
)
def test_other_refusals_name_the_field(call: Callable[[], object], field: str) -> None:
    """Lyrics, images, accounts, listing and downloads are checked before sending too."""
    with pytest.raises(ValidationError) as info:
        call()
    assert info.value.field == field


def test_other_bodies() -> None:
    """The non-job bodies use the API's names (maxJobs) and omit unset fields."""
    assert lyrics_body("a song", structure="verse, chorus") == {
        "prompt": "a song",
        "structure": "verse, chorus",
    }
    assert image_body("a cat", email="a@example.com") == {
        "prompt": "a cat",
        "email": "a@example.com",
    }
    assert account_add_body("r" * 10) == {"refresh_token": "r" * 10}
    assert account_add_body("r" * 10, max_jobs=16) == {"refresh_token": "r" * 10, "maxJobs": 16}
    assert account_limit_body("a@example.com", 4) == {"email": "a@example.com", "maxJobs": 4}
    assert list_params(limit=100, offset=0) == {"limit": 100, "offset": 0}
    assert download_params("c1") == {"id": "c1", "format": "mp3"}


def test_refresh_token_never_appears_in_its_error() -> None:
    """The refresh token is a credential; a refusal must give its length, not its value."""
    with pytest.raises(ValidationError) as info:
        account_add_body("secret99")
    assert "secret99" not in str(info.value) and "8" in str(info.value)


@pytest.mark.parametrize(
    ("content_type", "size", "ok"),
    [
        ("image/png", 20 * MIB, True),
        ("image/png", 20 * MIB + 1, False),
        ("image/jpeg; charset=binary", 10, True),
        ("audio/mpeg", 40 * MIB, True),
        ("audio/wav", 40 * MIB + 1, False),
        ("audio/x-m4a", 1, True),
        ("IMAGE/WEBP", 1, True),
    ],
)
def test_upload_size_caps_per_kind(content_type: str, size: int, ok: bool) -> None:
    """Images cap at 20 MB and audio at 40 MB; an oversized upload must not be sent."""
    if ok:
        kind, _ = upload_params(content_type, size)
        assert kind == content_type.split(";")[0].lower()
    else:
        with pytest.raises(ValidationError) as info:
            upload_params(content_type, size)
        assert info.value.field == "data"


def test_upload_refuses_unsupported_type_and_empty_files() -> None:
    """The server takes only the listed types and refuses empty bodies with a 400."""
    with pytest.raises(ValidationError) as info:
        upload_params("application/octet-stream", 10)
    assert info.value.field == "content_type"
    with pytest.raises(ValidationError) as info:
        upload_params("image/png", 0)
    assert info.value.field == "data"


def test_upload_query_params() -> None:
    """stripMetadata travels as a query string "true"/"false", email as is."""
    _, params = upload_params("image/png", 5, email="a@example.com", strip_metadata=False)
    assert params == {"email": "a@example.com", "stripMetadata": "false"}


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("cover.JPG", "image/jpeg"),
        ("a.jpeg", "image/jpeg"),
        ("x.png", "image/png"),
        ("x.webp", "image/webp"),
        ("beat.mp3", "audio/mpeg"),
        ("take.wav", "audio/wav"),
        ("song.m4a", "audio/mp4"),
    ],
)
def test_content_type_guessed_from_extension(name: str, content_type: str) -> None:
    """Uploading a path should just work for every supported extension."""
    assert guess_content_type(name) == content_type


def test_unknown_extension_asks_for_content_type() -> None:
    """Guessing wrong would earn a 400; asking is clearer."""
    with pytest.raises(ValidationError) as info:
        guess_content_type("notes.txt")
    assert info.value.field == "content_type"
