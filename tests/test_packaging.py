"""Packaging metadata: the bounds the code needs, the license, and dev tools kept out of extras."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

REPO = Path(__file__).resolve().parents[1]


def _pyproject() -> dict[str, Any]:
    data: dict[str, Any] = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    return data


def _bounds(requirement: str) -> tuple[str, dict[str, str]]:
    name, spec = re.match(r"([A-Za-z0-9_.-]+)(.*)", requirement).groups()  # type: ignore[union-attr]
    bounds = dict((op, version) for op, version in re.findall(r"(>=|<)\s*([0-9][0-9a-z.]*)", spec))
    return name.lower(), bounds


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def test_core_dependencies_have_a_tested_floor_and_stop_before_the_next_major() -> None:
    """An untested major release of httpx/anyio/msgspec/backoff must not reach users silently;
    and the design card's four are the whole core."""
    deps = dict(_bounds(r) for r in _pyproject()["project"]["dependencies"])
    assert set(deps) == {"httpx", "anyio", "msgspec", "backoff"}
    assert deps["httpx"]["<"] == "1"
    assert deps["anyio"]["<"] == "5"
    assert deps["msgspec"]["<"] == "1"
    assert deps["backoff"]["<"] == "3"
    for bounds in deps.values():
        assert ">=" in bounds  # tests_lowest pins exactly this version


def test_msgspec_floor_has_sorted_json_encoding() -> None:
    """The journal fingerprints with order="sorted", which msgspec added in 0.18.6."""
    deps = dict(_bounds(r) for r in _pyproject()["project"]["dependencies"])
    assert _version(deps["msgspec"][">="]) >= (0, 18, 6)
    assert 'order="sorted"' in (REPO / "flowmusic_async" / "_journal.py").read_text()


def test_license_file_matches_the_metadata() -> None:
    """The wheel ships the MIT text the metadata and classifier promise."""
    project = _pyproject()["project"]
    assert project["license"] == {"text": "MIT"}
    assert "License :: OSI Approved :: MIT License" in project["classifiers"]
    assert (REPO / "LICENSE").read_text().startswith("MIT License")


def test_python_classifiers_match_the_versions_nox_tests() -> None:
    """Classifiers claim exactly the Pythons `nox -s tests_all` runs."""
    project = _pyproject()["project"]
    claimed = sorted(
        c.rsplit(" :: ", 1)[1]
        for c in project["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    )
    noxfile = (REPO / "noxfile.py").read_text()
    supported = re.search(r"SUPPORTED = \[(.*?)\]", noxfile).group(1)  # type: ignore[union-attr]
    assert claimed == sorted(re.findall(r'"(3\.\d+)"', supported), key=_version)
    assert project["requires-python"] == f">={claimed[0]}"
    for framework in ("AnyIO", "AsyncIO", "Trio"):
        assert f"Framework :: {framework}" in project["classifiers"]


def test_development_tools_are_dependency_groups_not_extras() -> None:
    """`pip install flowmusic-async[test]` is not a thing users should see (PEP 735)."""
    pyproject = _pyproject()
    extras = pyproject["project"]["optional-dependencies"]
    groups = pyproject["dependency-groups"]
    assert "cli" in extras
    assert not {"test", "bench", "dev", "lint", "typecheck"} & set(extras)
    assert {"test", "bench", "dev"} <= set(groups)
    assert {"include-group": "test"} in groups["dev"]


def test_ci_default_sessions_check_formatting_and_the_lowest_versions() -> None:
    """`nox` with no arguments is what CI runs; it must include these checks."""
    noxfile = (REPO / "noxfile.py").read_text()
    defaults = re.search(r"nox\.options\.sessions = \[(.*?)\]", noxfile, re.S).group(1)  # type: ignore[union-attr]
    assert {"lint", "typecheck", "tests", "tests_lowest"} <= set(re.findall(r'"(\w+)"', defaults))
    assert '"format", "--check"' in noxfile
