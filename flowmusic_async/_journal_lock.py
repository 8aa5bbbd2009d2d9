"""The lock that lets one batch at a time use a journal file, in any process on the machine.

Two runs of one batch on one journal (a cron job that fires while the last run still goes, two
terminals, two `generate_many` calls in one program) would both find the same pending entries
and both pay for them. So a batch takes this lock before it reads its journal, and a second
batch is refused, before anything is sent, with `JournalInUse` naming the holder.

The lock is an OS file lock (`flock` on POSIX, `msvcrt.locking` on Windows) on a file beside
the journal (``<journal>.lock``), so the kernel frees it when its process dies, ``kill -9``
included: there is no stale lock to clean up. `flock` locks belong to an open file, not to a
process, so two batches in one process exclude each other too. The file itself is left in
place (removing it would let a third run lock a new file while the second holds the old one).
"""

from __future__ import annotations

import os
import socket
import sys
import time
from types import TracebackType
from typing import IO

from ._errors import JournalError, JournalInUse

__all__ = ["RunLock"]


class RunLock:
    """Held for one batch's run: ``with RunLock(journal_path):``; see the module docstring."""

    def __init__(self, journal_path: str) -> None:
        self._journal_path = journal_path
        self._lock_path = journal_path + ".lock"
        self._file: IO[str] | None = None

    def __enter__(self) -> RunLock:
        try:
            file = open(self._lock_path, "a+", encoding="utf-8")
        except OSError as exc:
            raise JournalError(
                f"cannot create the lock file {self._lock_path} beside journal "
                f"{self._journal_path}: {exc.strerror or exc}",
                path=self._journal_path,
            ) from None
        try:
            if not _try_lock(file):
                file.seek(0)
                holder = file.read().strip() or None
                raise JournalInUse(self._journal_path, holder)
            file.seek(0)
            file.truncate()
            started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
            file.write(f"pid {os.getpid()} on {socket.gethostname()} since {started}\n")
            file.flush()
        except BaseException:
            file.close()
            raise
        self._file = file
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        file, self._file = self._file, None
        if file is not None:
            file.close()  # closing the file releases the lock


def _try_lock(file: IO[str]) -> bool:
    """Take an exclusive lock on `file` without waiting; False if someone else holds it."""
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        import msvcrt

        try:
            msvcrt.locking(file.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
