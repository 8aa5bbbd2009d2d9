"""Every repeatable task: `nox` runs lint, typecheck and tests; `nox -s demo` runs the demo.

`nox -s docs` builds the documentation site (strict: any warning fails).

The README's two commands and .ci/run call these sessions, so a new user, a developer
and CI all run the same thing.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests", "conformance"]
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
    """mypy --strict on the package."""
    session.install("-e", ".[cli,pytest]", "mypy>=1.11")  # pytest: the plugin module
    session.run("mypy", "--strict", "flowmusic_async")


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
    """The benchmark suite (--quick for the short run); `-- scale|scheduler|pool|decode ...`
    runs that one benchmark (python -m benchmarks.bench_<name>) with the remaining arguments."""
    session.install("-e", ".[bench]")
    args = list(session.posargs)
    if args and args[0] in {"scale", "scheduler", "pool", "decode"}:
        session.run("python", "-m", f"benchmarks.bench_{args[0]}", *args[1:])
    else:
        session.run("python", "-m", "benchmarks", *args)


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site, built with --strict into .nox/site (--serve to preview it)."""
    session.install("-e", ".[docs]")
    session.env["NO_MKDOCS_2_WARNING"] = "1"  # Material's banner about its successor
    if "--serve" in session.posargs:
        session.run("mkdocs", "serve")
    else:
        session.run("mkdocs", "build", "--strict", "--site-dir", ".nox/site", *session.posargs)
