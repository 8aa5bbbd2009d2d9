"""Every repeatable task. `nox` runs what CI runs: lint, typecheck, typing, tests, tests_lowest,
conformance and docs (the site, strict: any warning fails); `nox -s demo` runs the demo,
`nox -s bench` the benchmarks.

The README's two commands and .ci/run call these sessions, so a new user, a developer
and CI all run the same thing. Development tools come from pyproject's PEP 735
[dependency-groups], read by nox itself, so any pip in the session's venv can install them.
"""

from __future__ import annotations

import os
from pathlib import Path

import nox
from packaging.requirements import Requirement

# nox.project.dependency_groups arrived in 2025.2.9.
nox.needs_version = ">=2025.2.9"
nox.options.sessions = [
    "lint",
    "typecheck",
    "typing",
    "tests",
    "tests_lowest",
    "conformance",
    "docs",
]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = False

PYPROJECT = nox.project.load_toml("pyproject.toml")
SUPPORTED = ["3.10", "3.11", "3.12", "3.13"]
# What the test suite installs: the package with the extras its tests exercise (the otel
# extra's SDK, which the library never depends on, comes with the test group).
TESTED = ".[cli,pytest,examples,otel]"


def group(*names: str) -> list[str]:
    """The requirements of pyproject's dependency groups, include-group resolved."""
    return list(nox.project.dependency_groups(PYPROJECT, *names))


# The suite mostly waits (songs on the simulator's clock, child processes starting), so it
# runs on two pytest-xdist workers per core; worksteal keeps a worker that drew the long tests
# from holding up the end. The few tests marked `serial` assert on wall-clock rates or
# durations, which other workers' load would skew: they run afterwards, alone.
WORKERS = str(2 * (os.cpu_count() or 1))


def run_suite(session: nox.Session, *args: str) -> None:
    """pytest in two steps: everything not `serial` in parallel, then the `serial` tests.

    Arguments after `--` go to both steps; then a step that their selection leaves empty is
    fine (pytest's exit status 5, "no tests collected"). The whole suite must find tests in both.
    """
    selected = [0, 5] if session.posargs else [0]
    parallel = ["-n", WORKERS, "--dist", "worksteal"]
    session.run(
        "pytest", *args, *parallel, "-m", "not serial", *session.posargs, success_codes=selected
    )
    session.run("pytest", *args, "-m", "serial", *session.posargs, success_codes=selected)


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite, on the interpreter that runs nox (examples included)."""
    session.install("-e", TESTED, *group("test"))
    run_suite(session)


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
    session.install("-c", str(constraints), "-e", TESTED, *group("test"))
    session.run("python", "-m", "pip", "list", "--format=freeze", silent=False)
    run_suite(session, "-q")


@nox.session(python=SUPPORTED)
def tests_all(session: nox.Session) -> None:
    """The test suite on every supported Python that is installed.

    With pyenv, make them visible first, e.g.
    `PYENV_VERSION=3.11.7:3.10.13:3.12.1:3.13.0 nox -s tests_all`.
    """
    session.install("-e", TESTED, *group("test"))
    run_suite(session, "-q")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff's linter over everything we ship and test, and its formatter in check mode."""
    session.install(*group("lint"))
    session.run("ruff", "check", "flowmusic_async", "tests", "benchmarks", "examples", "noxfile.py")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package, the examples, the benchmarks and the tests (tests/typing
    has its own session)."""
    session.install("-e", TESTED, *group("typecheck", "test", "bench"))
    # One run for the three: each run would analyse the package again. The examples are what
    # users copy, so they must pass users' checkers too.
    session.run("mypy", "--strict", "flowmusic_async", "examples", "benchmarks")
    session.run(
        "mypy",
        "--strict",
        "--explicit-package-bases",
        "--exclude",
        "tests/typing",
        "tests",
        env={"MYPYPATH": "tests"},  # the tests import their helpers (mock_api) as top-level
    )


@nox.session
def typing(session: nox.Session) -> None:
    """What users' type checkers see: verifytypes at 100%, and tests/typing under both checkers.

    `pyright --verifytypes` must find every public symbol of `flowmusic_async` and
    `flowmusic_async.testing` fully typed; tests/typing/check.py runs mypy --strict and
    pyright (strict) over correct user code, the README's examples, and wrong user code whose
    every marked line must be reported. The package is installed (not editable) so pyright
    reads it the way a user's environment does.
    """
    # pytest: the README's example test is checked too.
    session.install(".[pytest,otel]", *group("typing"))
    for package in ("flowmusic_async", "flowmusic_async.testing"):
        session.run("pyright", "--verifytypes", package, "--ignoreexternal", env=_venv_env(session))
    session.run("python", "tests/typing/check.py")


def _venv_env(session: nox.Session) -> dict[str, str]:
    """pyright finds the session's packages through VIRTUAL_ENV."""
    return {"VIRTUAL_ENV": str(session.virtualenv.location)}


@nox.session
def conformance(session: nox.Session) -> None:
    """schemathesis against the simulator over loopback HTTP with docs/openapi.yaml.

    Deterministic generation and a bounded number of cases per operation, so CI is stable;
    about 30 s. Pass e.g. `-- --max-examples 200` for a longer hunt.
    """
    session.install("-e", ".", *group("conformance"))
    session.run("python", "tests/testing/conformance.py", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """The main job on the embedded simulator: a batch of songs written to ./demo-songs."""
    session.install("-e", ".[cli]")
    session.run("flowmusic", "demo", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmark suite (--quick for the short run, ending on a one-screen summary with the
    environment line and the lone song's CPU and requests); `-- scale|scheduler|pool|decode|
    objects` runs that one benchmark (python -m benchmarks.bench_<name>) with the remaining
    arguments."""
    session.install("-e", ".", *group("bench"))
    args = list(session.posargs)
    if args and args[0] in {"scale", "scheduler", "pool", "decode", "objects"}:
        session.run("python", "-m", f"benchmarks.bench_{args[0]}", *args[1:])
    else:
        session.run("python", "-m", "benchmarks", *args)


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site, built with --strict into site/ (open site/index.html from disk);
    `-- --serve` serves it on http://127.0.0.1:8000 instead, rebuilt on every change."""
    session.install("-e", ".", *group("docs"))
    session.env["NO_MKDOCS_2_WARNING"] = "1"  # Material's banner about its successor
    if "--serve" in session.posargs:
        args = [arg for arg in session.posargs if arg != "--serve"]
        session.run("mkdocs", "serve", *args)
    else:
        session.run("mkdocs", "build", "--strict", *session.posargs)
