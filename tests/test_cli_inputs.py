"""Batch input files: every format parses to the same requests, and bad input names its line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flowmusic_async._cli._exit import ExitCode
from flowmusic_async._cli._inputs import (
    BatchInputError,
    detect_format,
    parse_batch,
    read_batch_file,
)

USEAPI_PROMPTS_JSON = """[
    {
        "prompt": "lo-fi hip hop, mellow piano, 80 bpm."
    },
    {
        "prompt": "warm indie folk ballad, acoustic guitar",
        "ghostwriter": "pro"
    },
    {
        "prompt": "energetic synthwave, driving bass, 120 bpm",
        "instrumental": true,
        "__note": "comment keys are ignored"
    },
    {
        "prompt": "soulful R&B, lush keys, 90 bpm",
        "lyrics": "[Verse 1]\\nCity lights blur in the rain\\n[Chorus]\\nAnd I will wait"
    }
]
"""


def test_useapi_prompts_json_is_read_as_their_script_reads_it(tmp_path: Path) -> None:
    """Users arrive with useapi's own prompts.json; it must work unchanged."""
    path = tmp_path / "prompts.json"
    path.write_text(USEAPI_PROMPTS_JSON)
    items = read_batch_file(path)
    assert [item.line for item in items] == [2, 5, 9, 14]
    assert items[1].request == {
        "prompt": "warm indie folk ballad, acoustic guitar",
        "ghostwriter": "pro",
    }
    assert items[2].request["instrumental"] is True
    assert "__note" not in items[2].request
    assert items[3].request["lyrics"].startswith("[Verse 1]\n")


def test_text_jsonl_csv_and_json_give_the_same_requests(tmp_path: Path) -> None:
    """The input format is a convenience; the batch it describes must not depend on it."""
    expected = [
        {"prompt": "calm piano"},
        {"prompt": "fast drums, 170 bpm", "instrumental": True, "email": "a@example.com"},
    ]
    files = {
        "p.txt": "# my prompts\ncalm piano\n\nfast drums, 170 bpm\n",
        "p.jsonl": '{"prompt": "calm piano"}\n\n'
        '{"prompt": "fast drums, 170 bpm", "instrumental": true, "email": "a@example.com"}\n',
        "p.csv": "prompt,instrumental,email\ncalm piano,,\n"
        '"fast drums, 170 bpm",yes,a@example.com\n',
        "p.tsv": "Prompt\tinstrumental\temail\ncalm piano\t\t\n"
        "fast drums, 170 bpm\ttrue\ta@example.com\n",
        "p.json": json.dumps(expected),
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        requests = [item.request for item in read_batch_file(tmp_path / name)]
        if name == "p.txt":  # plain text carries prompts only
            assert requests == [{"prompt": "calm piano"}, {"prompt": "fast drums, 170 bpm"}]
        else:
            assert requests == expected, name


def test_format_detected_by_content_when_extension_says_nothing() -> None:
    """Files named `prompts` or `songs.list` must still be read correctly."""
    assert detect_format("prompts", '[{"prompt": "x"}]') == "json"
    assert detect_format("prompts", '{"prompt": "x"}\n') == "jsonl"
    assert detect_format("prompts", "title,prompt\na,b\n") == "csv"
    assert detect_format("prompts", "a song, with a comma\n") == "text"
    assert detect_format("songs.json", '{"prompt": "x"}\n{"prompt": "y"}\n') == "jsonl"


def test_csv_keeps_line_numbers_across_multiline_cells_and_maps_api_names() -> None:
    """A lyrics cell spans lines; errors after it must still point at the right line."""
    text = (
        "prompt,lyrics,refImage2,refImage1,model\n"
        'ballad,"[Verse]\nline one\nline two",img:b,img:a,lyria-3.5\n'
        "rock,,,,lyria-4\n"
    )
    with pytest.raises(BatchInputError) as info:
        parse_batch(text, source="songs.csv")
    assert str(info.value).startswith("songs.csv:5: model must be one of")
    first = parse_batch(text.rsplit("rock", 1)[0], source="songs.csv")[0]
    assert first.line == 2
    assert first.request["ref_images"] == ("img:a", "img:b")  # ordered by number
    assert first.request["model"] == "lyria-3.5"


@pytest.mark.parametrize(
    ("name", "text", "where", "problem"),
    [
        ("a.jsonl", '{"prompt": "ok"}\n{"prompt": "x",}\n', "a.jsonl:2", "not valid JSON"),
        ("a.jsonl", '{"prompt": "ok"}\n\n[1, 2]\n', "a.jsonl:3", "expected an object"),
        ("a.json", '[\n {"prompt": "ok"},\n {"promt": "typo"}\n]', "a.json:3", "unknown field"),
        ("a.json", '[\n {"prompt": "ok"},\n {"prompt": ""}\n]', "a.json:3", "non-empty"),
        ("a.json", '"not a list"', "a.json", "expected a JSON array"),
        ("a.json", '[{"prompt": "a"}\n {"prompt": "b"}]', "a.json:2", "expected ',' or ']'"),
        ("a.csv", "title,mood\nx,y\n", "a.csv:1", "no 'prompt' column"),
        ("a.csv", "prompt,instrumental\nx,maybe\n", "a.csv:2", "true or false"),
        ("a.csv", "prompt\nx,extra\n", "a.csv:2", "2 cells but 1 columns"),
        ("a.json", '[{"prompt": "x", "instrumental": "true"}]', "a.json:1", "true or false"),
        ("a.json", '[{"prompt": "x", "ghostwriter": "max"}]', "a.json:1", "ghostwriter"),
        (
            "a.jsonl",
            '{"prompt": "x", "lyrics": "la", "instrumental": true}',
            "a.jsonl:1",
            "contradict",
        ),
        ("a.txt", "\n# only comments\n", "a.txt", "no prompts found"),
        ("a.txt", "x" * 10_001, "a.txt:1", "at most 10000"),
    ],
)
def test_bad_input_names_file_and_line(name: str, text: str, where: str, problem: str) -> None:
    """A bad row must stop the batch before anything is paid for, and say where to look."""
    with pytest.raises(BatchInputError) as info:
        parse_batch(text, source=name)
    message = str(info.value)
    assert message.startswith(where + ": ")
    assert problem in message
    assert info.value.code == ExitCode.USAGE


def test_missing_and_non_utf8_files_are_input_errors(tmp_path: Path) -> None:
    """File problems are usage errors (exit 2) with the file's name, not tracebacks."""
    with pytest.raises(BatchInputError, match="no such file"):
        read_batch_file(tmp_path / "absent.txt")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("café\n".encode("latin-1"))
    with pytest.raises(BatchInputError, match="not UTF-8"):
        read_batch_file(latin)


def test_bom_and_crlf_are_tolerated(tmp_path: Path) -> None:
    """Files saved by Excel or Notepad start with a BOM and end lines with CRLF."""
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffprompt,email\r\nsoft jazz,b@example.com\r\n".encode())
    (item,) = read_batch_file(path)
    assert item.request == {"prompt": "soft jazz", "email": "b@example.com"}
