"""Every repeatable task: `nox` runs lint, typecheck, tests and tests_lowest; `nox -s demo`
runs the demo.

The README's two commands and .ci/run call these sessions, so a new user, a developer
and CI all run the same thing. Development tools come from pyproject's PEP 735
[dependency-groups], read by nox itself, so any pip in the session's venv can install them.
"""

from __future__ import annotations

from pathlib import Path

import nox
from packaging.requirements import Requirement

# nox.project.dependency_groups arrived in 2025.2.9.
nox.needs_version = ">=2025.2.9"
nox.options.sessions = [
    "lint",
    "typecheck",
    "tests",
    "tests_lowest",
]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = False

PYPROJECT = nox.project.load_toml("pyproject.toml")
SUPPORTED = ["3.10", "3.11", "3.12", "3.13"]


def group(*names: str) -> list[str]:
    """The requirements of pyproject's dependency groups, include-group resolved."""
    return list(nox.project.dependency_groups(PYPROJECT, *names))


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite, on the interpreter that runs nox."""
    session.install("-e", ".[cli]", *group("test"))
    session.run("pytest", *session.posargs)


def lowest_constraints() -> list[str]:
    """`name==lowest` for every runtime requirement (the core and the cli extra).

    Generated from pyproject on each run, so the pins cannot drift from the bounds. A
    requirement without a `>=` lower bound is an error: its lowest version is untested.
    """
    project = PYPROJECT["project"]
    requirements = [*project["dependencies"], *project["optional-dependencies"]["cli"]]
    pins = []
    for text in requirements:
        requirement = Requirement(text)
        lower = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        if len(lower) != 1:
            raise ValueError(f"{text!r} needs exactly one >= lower bound")
        pins.append(f"{requirement.name}=={lower[0]}")
    return pins


@nox.session
def tests_lowest(session: nox.Session) -> None:
    """The suite against the lowest version every runtime dependency allows."""
    constraints = Path(session.create_tmp()) / "constraints-lowest.txt"
    constraints.write_text("\n".join(lowest_constraints()) + "\n")
    session.install("-c", str(constraints), "-e", ".[cli]", *group("test"))
    session.run("python", "-m", "pip", "list", "--format=freeze", silent=False)
    session.run("pytest", "-q", *session.posargs)


@nox.session(python=SUPPORTED)
def tests_all(session: nox.Session) -> None:
    """The test suite on every supported Python that is installed.

    With pyenv, make them visible first, e.g.
    `PYENV_VERSION=3.11.7:3.10.13:3.12.1:3.13.0 nox -s tests_all`.
    """
    session.install("-e", ".[cli]", *group("test"))
    session.run("pytest", "-q", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff's linter over everything we ship and test, and its formatter in check mode."""
    session.install(*group("lint"))
    session.run("ruff", "check", "flowmusic_async", "tests", "benchmarks", "noxfile.py")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package."""
    session.install("-e", ".[cli]", *group("typecheck"))
    session.run("mypy", "--strict", "flowmusic_async")


@nox.session
def demo(session: nox.Session) -> None:
    """The main job on the embedded simulator: a batch of songs written to ./demo-songs."""
    session.install("-e", ".[cli]")
    session.run("flowmusic", "demo", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmark suite (pass --quick for the short run)."""
    session.install("-e", ".", *group("bench"))
    session.run("python", "-m", "benchmarks", *session.posargs)
