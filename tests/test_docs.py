"""Every Python block in the docs (and the README) runs against the simulator.

A user copies these first, so each page is a test. The rules, which docs/contributing.md
repeats for writers:

- Blocks of one page run in order and share their names, like a notebook.
- A block with top-level ``await``/``async with`` runs inside an event loop where ``fm`` is an
  open client and ``sim`` its simulator (entered, so webhooks are delivered). ``prompts`` is a
  short list of prompts.
- A block without top-level ``await`` runs as a script (it may call ``anyio.run`` or
  ``trio.run`` itself).
- In both, ``FlowMusic()`` built without a ``base_url`` talks to a fresh in-process simulator
  at time scale 0.002 (songs take milliseconds), and ``USEAPI_TOKEN`` is the simulator's.
- A block defining ``test_*`` functions is a user's test file: the page's such blocks run
  together under pytest in a subprocess, with the package's pytest plugin.
- A block preceded by ``<!-- not-run: reason -->`` is skipped; it must say why, and it should
  be rare. Blocks that include a file (``--8<--``) are skipped: tests/test_examples.py runs
  those files.
"""

from __future__ import annotations

import ast
import inspect
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

import flowmusic_async
from flowmusic_async import FlowMusic, Timing
from flowmusic_async.testing import Simulator
from flowmusic_async.testing.pytest_plugin import MakeSim

ROOT = Path(__file__).parents[1]
SCALE = 0.002
PAGES = [*sorted(ROOT.glob("docs/**/*.md")), ROOT / "README.md"]
BLOCK = re.compile(r"(?:<!--\s*(not-run[^>]*)-->\s*\n)?```python\n(.*?)```", re.S)
# The simulator each block talks to (flowmusic_make_sim) starts from these.
pytestmark = pytest.mark.flowmusic_sim(time_scale=SCALE, seed=1)


def blocks(page: Path) -> list[tuple[str | None, str]]:
    """(not-run marker or None, source) for each ```python block of a page."""
    return [(marker or None, source) for marker, source in BLOCK.findall(page.read_text())]


def runnable(page: Path) -> list[str]:
    return [
        source
        for marker, source in blocks(page)
        if marker is None and "--8<--" not in source and "def test_" not in source
    ]


def user_tests(page: Path) -> list[str]:
    return [source for marker, source in blocks(page) if marker is None and "def test_" in source]


class _Bound:
    """The simulator `FlowMusic()` talks to while one block runs."""

    sim: Simulator


def _sim_flowmusic(bound: _Bound) -> type[FlowMusic]:
    class SimFlowMusic(FlowMusic):
        def __init__(self, **kwargs: Any) -> None:
            sim = bound.sim
            kwargs.setdefault("token", sim.token)
            kwargs.setdefault("timing", Timing.scaled(SCALE))
            if "base_url" not in kwargs and "http_client" not in kwargs:
                kwargs["base_url"] = sim.base_url
                kwargs.setdefault("transport", sim.transport())
            super().__init__(**kwargs)

    SimFlowMusic.__name__ = SimFlowMusic.__qualname__ = "FlowMusic"
    return SimFlowMusic


def _label(page: Path) -> str:
    return str(page.relative_to(ROOT))


@pytest.mark.parametrize("page", [p for p in PAGES if runnable(p)], ids=_label)
def test_every_python_block_of_the_page_runs(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flowmusic_make_sim: MakeSim
) -> None:
    """The page's blocks run in order against the simulator, as a reader would run them."""
    bound = _Bound()
    monkeypatch.setattr(flowmusic_async, "FlowMusic", _sim_flowmusic(bound))
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {
        "__name__": "__main__",
        "prompts": ["dream pop", "lofi beat", "sea shanty", "synthwave", "bossa nova"],
    }
    for number, source in enumerate(runnable(page), 1):
        bound.sim = flowmusic_make_sim(4, 4, 4)
        monkeypatch.setenv("USEAPI_TOKEN", bound.sim.token)
        code = compile(
            source, f"{_label(page)} block {number}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        )
        try:
            if code.co_flags & inspect.CO_COROUTINE:
                anyio.run(_run_async, code, namespace, bound)
            else:
                exec(code, namespace)
        except BaseException as error:
            raise AssertionError(f"{_label(page)} block {number} failed:\n{source}") from error


async def _run_async(code: Any, namespace: dict[str, Any], bound: _Bound) -> None:
    async with _client(bound) as (sim, fm):
        namespace.update(sim=sim, fm=fm)
        await eval(code, namespace)


@asynccontextmanager
async def _client(bound: _Bound) -> AsyncIterator[tuple[Simulator, FlowMusic]]:
    async with bound.sim as sim, flowmusic_async.FlowMusic() as fm:
        yield sim, fm


def test_the_pages_user_test_files_pass_under_pytest(tmp_path: Path) -> None:
    """docs/testing.md's tests are the first thing users copy into their own suites; they
    pass where trio is not installed (a dependency of neither the package nor its extras
    but `examples`), since a user's first run used to end in five trio ImportErrors."""
    no_trio = tmp_path / "no_trio"
    no_trio.mkdir()
    (no_trio / "trio.py").write_text("raise ImportError('trio is not installed here')\n")
    tmp_path = tmp_path / "user_tests"
    tmp_path.mkdir()
    files = 0
    for page in PAGES:
        sources = user_tests(page)
        if not sources:
            continue
        name = "test_" + re.sub(r"\W", "_", _label(page)).lower() + ".py"
        (tmp_path / name).write_text("\n\n".join(sources))
        files += 1
    assert files, "no page has a test file block"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(no_trio), str(ROOT)])}
    # hypothesis (this suite's, not a user's) loads trio's plugin for it when it sees trio.
    plugins = ["-p", "no:cacheprovider", "-p", "no:hypothesispytest"]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", *plugins, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout and "skipped" not in result.stdout


def test_not_run_blocks_are_rare_and_say_why() -> None:
    """An unrunnable block is an exception that must give its reason."""
    markers = [marker for page in PAGES for marker, _ in blocks(page) if marker]
    assert all(re.match(r"not-run:\s*\S", m) for m in markers), markers
    total = sum(len(blocks(page)) for page in PAGES)
    assert len(markers) <= max(2, total // 10), markers


# ----- installing ------------------------------------------------------------------------------

README = ROOT / "README.md"
EXAMPLES = sorted(ROOT.glob("examples/*.py"))
# `pip install flowmusic-async`, `pip install "flowmusic-async[cli]"`: the published name.
INSTALL_BY_NAME = re.compile(r"pip install [\"']?flowmusic-async\b")


def test_install_lines_name_what_exists() -> None:
    """The package is not on PyPI: a line installing it by name fails for every newcomer
    (`No matching distribution found`), unless it says that it is for later."""
    unmarked = []
    for path in [*PAGES, *EXAMPLES]:
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines):
            window = " ".join(lines[max(0, number - 1) : number + 1])
            if INSTALL_BY_NAME.search(line) and "not yet" not in window:
                unmarked.append(f"{path.relative_to(ROOT)}:{number + 1}: {line.strip()}")
    assert not unmarked, unmarked
    assert 'pip install -e ".[cli]"' in README.read_text()


def test_the_readmes_way_round_an_externally_managed_python_installs_nox(tmp_path: Path) -> None:
    """Debian's and Ubuntu's python3 refuse `pip install` (PEP 668): the README's line for them
    is run as written, followed by the README's own first step, and nox then runs."""
    text = README.read_text()
    [paragraph] = [p for p in text.split("\n\n") if "externally-managed-environment" in p]
    venv = re.search(r"`(python3 -m venv [^`]+)`", paragraph)
    assert venv is not None, paragraph
    assert "python3 -m pip install nox && python3 -m nox\n" in text  # the README's commands
    script = f"{venv.group(1)} && python3 -m pip install -q nox && python3 -m nox --version"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    result = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / ".venv" / "bin" / "nox").exists()


# ----- what the docs may cite ------------------------------------------------------------------

API_NOTES = ROOT / "docs" / "api-notes.md"
# Every text file a user of the project gets: the docs, the package, the examples.
SHIPPED = [
    path
    for folder in ("docs", "flowmusic_async", "examples")
    for path in sorted((ROOT / folder).rglob("*"))
    if path.is_file() and path.suffix in {".md", ".py", ".yaml", ".yml", ".toml", ".txt", ".csv"}
]


def test_no_shipped_file_cites_a_document_users_do_not_have() -> None:
    """The project's own notes (docs/api-notes.md) say what it assumes about the API; a path
    into the developers' private contract, or its "open question N", means nothing to a user."""
    cited = [
        f"{path.relative_to(ROOT)}: {needle}"
        for path in [*SHIPPED, README]
        # "§8.8" and "Open question 7" point into the private contract as surely as its path.
        for needle in ("shared/api", "flowmusic_api.md", "open question", "§")
        if needle in path.read_text(encoding="utf-8").lower()
    ]
    assert not cited, cited


def test_every_reference_to_an_api_note_finds_its_anchor() -> None:
    """Comments, docstrings and pages point at docs/api-notes.md#<anchor>: a renamed or
    mistyped anchor would leave the reader on the top of a long page."""
    anchors = set(re.findall(r"\{ #([\w-]+) \}", API_NOTES.read_text()))
    assert {"the-seed-page", "q28-unknown-account"} <= anchors
    sources = [*SHIPPED, README, *sorted(ROOT.glob("tests/**/*.py"))]
    references = {
        (str(path.relative_to(ROOT)), anchor)
        for path in sources
        for anchor in re.findall(r"api-notes\.md#([\w-]+)", path.read_text(encoding="utf-8"))
    }
    assert len(references) >= 20
    assert {ref for ref in references if ref[1] not in anchors} == set()
    # openapi.yaml's `x-open-question: N` names note N.
    numbers = re.findall(r"x-open-question: (\d+)", (ROOT / "docs/openapi.yaml").read_text())
    assert (
        numbers
        and {n for n in numbers if not any(a.startswith(f"q{n}-") for a in anchors)} == set()
    )


# ----- the site --------------------------------------------------------------------------------


def test_the_site_is_built_where_a_reader_looks_and_opens_from_disk() -> None:
    """It was built into the hidden .nox/site, and from disk its links opened directory
    listings: now site/ (ignored by git), page.html links, the search index in the pages, and
    the README says where it is and how to serve it."""
    import yaml

    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)
    assert config["site_dir"] == "site" and config["use_directory_urls"] == "false"
    assert "offline" in config["plugins"]
    assert "site/" in (ROOT / ".gitignore").read_text().splitlines()
    python = config["plugins"][-1]["mkdocstrings"]["handlers"]["python"]["options"]
    assert python["separate_signature"] == "true" and int(python["line_length"]) <= 100
    development = README.read_text().split("## Development")[1]
    assert "`site/`" in development and "nox -s docs -- --serve" in development
    # A job's deadline is `deadline=`; the front page never teaches a `timeout` for it.
    assert "`timeout`" not in (ROOT / "docs/index.md").read_text()
