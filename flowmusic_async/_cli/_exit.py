"""Exit codes scripts can rely on, and the one mapping from a typed error to its code."""

from __future__ import annotations

import enum

from .._errors import (
    AccountError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    InsufficientCreditsError,
    NoAccountAvailable,
    SubmissionUncertain,
    ValidationError,
)


class ExitCode(enum.IntEnum):
    """The process exit status of every `flowmusic` command (documented in `--help`)."""

    OK = 0
    FAILED = 1  # some songs failed, or the request itself failed
    USAGE = 2  # bad arguments or input file, refused before anything was sent
    AUTH = 3  # no token, or the API refused it
    NO_CREDITS = 4  # insufficient credits, or no usable account
    UNCERTAIN = 5  # a paid POST may or may not have created a job: check by hand
    API_REFUSED = 6  # the API answered 400: it found the request invalid
    INTERRUPTED = 130  # Ctrl-C (SIGINT), as shells report it: 128 + 2
    TERMINATED = 143  # SIGTERM (kill, systemd, docker stop), as shells report it: 128 + 15


EPILOG = """\
exit codes:
  0    success
  1    some songs failed (or the request failed)
  2    usage error or bad input (arguments, input file, local validation): nothing was sent
  3    authentication: no token (set USEAPI_TOKEN or --token) or the token was refused
  4    insufficient credits, or no usable account
  5    a submission's outcome is uncertain; check GET /jobs by hand before resubmitting
  6    the API refused a request as invalid (HTTP 400); its message says why
  130  interrupted by Ctrl-C (SIGINT); what was cancelled and how to resume is printed
  143  terminated by SIGTERM; handled like Ctrl-C

environment:
  USEAPI_TOKEN        the API token (or --token); never printed
  FLOWMUSIC_BASE_URL  the API root (or --base-url), e.g. a `flowmusic simulate` address
  FLOWMUSIC_LOG       debug or info: the library's log on stderr (like -vv / -v)
  FLOWMUSIC_TIME_SCALE  a simulator's time scale (or --time-scale), e.g. 0.01
"""

SUB_EPILOG = """\
The global options this command uses may also follow it; `flowmusic --help` lists them,
with the exit codes and the environment variables.
"""


class CommandError(Exception):
    """A problem the CLI finds itself (bad input file, no token), with the code to exit with."""

    def __init__(self, message: str, *, code: ExitCode = ExitCode.USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def exit_code_for(error: BaseException) -> ExitCode:
    """The exit code for an error that ended a command (a BatchAborted is judged by its cause)."""
    if isinstance(error, CommandError):
        return error.code
    # BatchAborted (a batch stopped on a 401 or 402) carries the error that stopped it.
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException) and cause is not error:
        return exit_code_for(cause)
    for classes, code in _BY_CLASS:
        if isinstance(error, classes):
            return code
    return ExitCode.FAILED


# First match wins; everything else (job failures, timeouts, 404s, 5xx) is an ordinary failure.
_BY_CLASS: tuple[tuple[tuple[type[BaseException], ...], ExitCode], ...] = (
    ((ValidationError, ConfigurationError), ExitCode.USAGE),
    ((BadRequestError,), ExitCode.API_REFUSED),
    ((AuthenticationError,), ExitCode.AUTH),
    ((InsufficientCreditsError, AccountError, NoAccountAvailable), ExitCode.NO_CREDITS),
    ((SubmissionUncertain,), ExitCode.UNCERTAIN),
)


def worst(codes: list[ExitCode]) -> ExitCode:
    """The code that best describes several outcomes: account-wide stops beat uncertainty,
    which beats ordinary failures (a human must act on the first two)."""
    rank = [
        ExitCode.OK,
        ExitCode.FAILED,
        ExitCode.API_REFUSED,
        ExitCode.UNCERTAIN,
        ExitCode.NO_CREDITS,
        ExitCode.AUTH,
        ExitCode.USAGE,
        ExitCode.INTERRUPTED,
        ExitCode.TERMINATED,
    ]
    return max(codes, key=rank.index, default=ExitCode.OK)
