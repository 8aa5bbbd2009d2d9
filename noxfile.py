"""Every repeatable task: `nox` runs lint, typecheck, typing and tests; `nox -s demo` the demo.

`nox -s docs` builds the documentation site (strict: any warning fails).

The README's two commands and .ci/run call these sessions, so a new user, a developer
and CI all run the same thing.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "typing", "tests", "conformance"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = False

SUPPORTED = ["3.10", "3.11", "3.12", "3.13"]


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite, on the interpreter that runs nox (examples included)."""
    session.install("-e", ".[test,examples]")
    session.run("pytest", *session.posargs)


@nox.session(python=SUPPORTED)
def tests_all(session: nox.Session) -> None:
    """The test suite on every supported Python that is installed.

    With pyenv, make them visible first, e.g.
    `PYENV_VERSION=3.11.7:3.10.13:3.12.1:3.13.0 nox -s tests_all`.
    """
    session.install("-e", ".[test,examples]")
    session.run("pytest", "-q", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over everything we ship and test."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", "flowmusic_async", "tests", "benchmarks", "examples", "noxfile.py")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package and on the tests (tests/typing has its own session)."""
    # pytest: the plugin module; test: what the tests import (fastapi, trio, ...)
    session.install("-e", ".[cli,pytest,test,examples]", "mypy>=1.11")
    session.run("mypy", "--strict", "flowmusic_async")
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
    session.install(".[pytest]", "mypy>=1.11", "pyright>=1.1.380")
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
    session.install("-e", ".[conformance]")
    session.run("python", "tests/testing/conformance.py", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """The main job on the embedded simulator: a batch of songs written to ./demo-songs."""
    session.install("-e", ".[cli]")
    session.run("flowmusic", "demo", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmark suite (pass --quick for the short run)."""
    session.install("-e", ".[bench]")
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site, built with --strict into .nox/site (--serve to preview it)."""
    session.install("-e", ".[docs]")
    session.env["NO_MKDOCS_2_WARNING"] = "1"  # Material's banner about its successor
    if "--serve" in session.posargs:
        session.run("mkdocs", "serve")
    else:
        session.run("mkdocs", "build", "--strict", "--site-dir", ".nox/site", *session.posargs)
