"""A SQLite journal that lets a batch of songs survive a crash and resume without paying twice.

One file per batch. Each request gets a stable key, and each step of its life is written and
committed before the method that records it returns:

    pending -> submitting -> submitted -> completed
                    \\             \\---> failed
                     \\---> failed

``submitting`` is written *before* the POST goes out, so after a crash an entry left in that
state means "a job may exist for this; reconcile before paying again" rather than "never sent".

The database is driven through ``anyio.to_thread.run_sync`` so the event loop never waits on the
disk. One connection (``check_same_thread=False``) is shared and every use of it holds one
``anyio.Lock``; a ``Journal`` may therefore be shared by any number of tasks in one event loop.
WAL mode with ``synchronous=NORMAL`` keeps every committed write across a killed process (a power
cut may lose the last few commits, which the reconcile step tolerates).

One batch at a time: a batch holds `Journal.run` (a `RunLock` on ``<journal>.lock``) while it
runs, so a second batch on the same file, in this process or another, is refused with
`JournalInUse` before it sends anything. While it holds it, a reserve file
(``<journal>.reserve``, `RESERVE_BYTES`) keeps room on the disk: when a write meets a full
disk, the reserve is deleted and the write tried once more, so the steps of the jobs already
paid for (their jobids, their results) still reach the journal; `problem` then says the disk
is full, and the batch stops placing new work. Every failure to read or write is a
`JournalError` naming the file. See docs/concepts/journal.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import time
import warnings
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from os import PathLike
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar

import anyio
import anyio.to_thread
import msgspec

from flowmusic_async._errors import JournalError
from flowmusic_async._journal_lock import RunLock
from flowmusic_async._models import JOB_DECODER, Job
from flowmusic_async._requests import DELIVERY_FIELDS, SongRequest

__all__ = ["Entry", "EntryState", "Journal", "JournalError", "fingerprint"]

EntryState = Literal["pending", "submitting", "submitted", "completed", "failed"]

# Bumped whenever the table layout changes; a newer file refuses to open in older code instead of
# being misread.
SCHEMA_VERSION = 1
# "FMJ1" as an int: marks the file as ours, so a random SQLite database is not mistaken for one.
APPLICATION_ID = 0x464D4A31
# Room kept on the journal's disk while a batch runs. A step is a page or three of the WAL
# (4 KiB each; a completed job's record a few KiB more): 2 MiB records a few hundred steps, the
# jobs in flight when the disk filled.
RESERVE_BYTES = 2 * 1024 * 1024

_SCHEMA = """
CREATE TABLE entries (
    key           TEXT PRIMARY KEY,
    idx           INTEGER NOT NULL,
    params        TEXT NOT NULL,
    state         TEXT NOT NULL,
    client_ref    TEXT,
    email         TEXT,
    jobid         TEXT,
    sent_at       REAL,
    job           TEXT,
    error_type    TEXT,
    error_message TEXT,
    updated_at    REAL NOT NULL
);
CREATE INDEX entries_by_idx ON entries (idx);
"""

_COLUMNS = (
    "key, idx, params, state, client_ref, email, jobid, sent_at, job, error_type, error_message, "
    "updated_at"
)

_T = TypeVar("_T")
# SQLite's result code for "database or disk is full" (sqlite3.SQLITE_FULL from Python 3.11).
_SQLITE_FULL = 13


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    """One request of a batch and how far it got.

    ``index`` is the request's position in the input that first registered it. ``job`` is the
    final record: the completed job, or the failed one when the failure carried a record.
    """

    key: str
    index: int
    params: dict[str, Any]
    state: EntryState
    client_ref: str | None = None
    email: str | None = None
    jobid: str | None = None
    sent_at: float | None = None
    job: Job | None = None
    error_type: str | None = None
    error_message: str | None = None
    updated_at: float = 0.0


def _canonical_json(params: Mapping[str, Any]) -> bytes:
    # None means "not set" everywhere in the client (JSON bodies omit it), so {"lyrics": None}
    # and {} are the same request and must share a fingerprint. Where the result is delivered
    # (`SongRequest.reply_url`, or the client's default) does not change which song it is.
    present = {
        name: value
        for name, value in params.items()
        if value is not None and name not in DELIVERY_FIELDS
    }
    try:
        return msgspec.json.encode(present, order="sorted")
    except (TypeError, msgspec.EncodeError) as exc:
        raise TypeError(f"request parameters are not JSON-serialisable: {exc}") from exc


def fingerprint(params: Mapping[str, Any] | SongRequest) -> str:
    """Identify a request by its content: sha256 of its canonical JSON, first 24 hex digits.

    Takes a `SongRequest` or its fields (`SongRequest.to_params`). Keys are sorted and
    ``None`` values dropped, so the order in which parameters were written and
    explicitly-unset fields do not change the fingerprint; nor does ``reply_url``.
    """
    if isinstance(params, SongRequest):
        params = params.to_params()
    return hashlib.sha256(_canonical_json(params)).hexdigest()[:24]


def _row_to_entry(row: tuple[Any, ...]) -> Entry:
    (key, idx, params, state, client_ref, email, jobid, sent_at, job, err_type, err_msg, upd) = row
    return Entry(
        key=key,
        index=idx,
        params=msgspec.json.decode(params),
        state=state,
        client_ref=client_ref,
        email=email,
        jobid=jobid,
        sent_at=sent_at,
        job=None if job is None else JOB_DECODER.decode(job),
        error_type=err_type,
        error_message=err_msg,
        updated_at=upd,
    )


def _connect(path: str) -> sqlite3.Connection:
    """Open (creating if needed) and check the database; runs in a worker thread."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise JournalError(f"cannot open journal {path}: folder {folder} does not exist", path=path)
    if os.path.isfile(path) and os.path.getsize(path) == 0 and not _has_wal(path):
        # SQLite would take an empty file for a new journal and start afresh, silently.
        warnings.warn(
            f"journal {path} is empty (0 bytes): its history is gone, so this batch starts "
            "afresh and does not know the jobs an earlier run submitted",
            UserWarning,
            stacklevel=2,
        )
    try:
        # isolation_level=None: no implicit transactions; each statement commits on its own and
        # the multi-row writes below open their own BEGIN IMMEDIATE.
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    except sqlite3.Error as exc:
        raise _journal_error(path, "open", exc) from None
    try:
        # IMMEDIATE: two processes opening a new file at once must not both create the schema.
        conn.execute("BEGIN IMMEDIATE")
        application_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if application_id == 0 and version == 0 and tables == 0:
            # One statement at a time: executescript() would COMMIT the IMMEDIATE transaction.
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        elif application_id != APPLICATION_ID:
            raise JournalError(
                f"{path} is an SQLite database but not a flowmusic journal", path=path
            )
        elif version != SCHEMA_VERSION:
            age = "newer" if version > SCHEMA_VERSION else "older"
            raise JournalError(
                f"{path} has journal schema version {version}, but this version of "
                f"flowmusic_async reads only version {SCHEMA_VERSION} (was it written by a {age} "
                "release?)",
                path=path,
            )
        conn.execute("COMMIT")
        # Set only once the file is known to be ours, so a foreign database is left untouched.
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    except sqlite3.Error as exc:
        conn.close()
        if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
            raise JournalError(f"{path} cannot be used as a journal: {exc}", path=path) from None
        raise _journal_error(path, "open", exc) from None
    except BaseException:
        conn.close()
        raise
    return conn


def _has_wal(path: str) -> bool:
    wal = path + "-wal"
    return os.path.isfile(wal) and os.path.getsize(wal) > 0


def _is_disk_full(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return bool(code & 0xFF == _SQLITE_FULL)
    return "full" in str(exc)


def _journal_error(path: str, doing: str, exc: sqlite3.Error) -> JournalError:
    """A `JournalError` naming the file and what failed; the cause's text, but not the cause
    itself (a sqlite3 error carries nothing more, and keeping it would print its traceback)."""
    full = _is_disk_full(exc)
    hint = ""
    if full:
        hint = " (free some space on that disk, then run the batch again to resume)"
    elif "unable to open" in str(exc) or "readonly" in str(exc):
        hint = " (is its folder writable?)"
    elif "locked" in str(exc):
        hint = " (another program holds a lock on it)"
    return JournalError(f"journal {path}: {doing} failed: {exc}{hint}", path=path, disk_full=full)


def _drop_reserve_and_unlock(reserve: str, lock: RunLock) -> None:
    with contextlib.suppress(OSError):
        os.unlink(reserve)
    lock.__exit__(None, None, None)


def _make_reserve(path: str) -> bool:
    """Write `RESERVE_BYTES` of real blocks at `path` (a sparse file would free nothing)."""
    try:
        with open(path, "wb") as file:
            chunk = bytes(64 * 1024)
            for _ in range(RESERVE_BYTES // len(chunk)):
                file.write(chunk)
            file.flush()
            os.fsync(file.fileno())
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(path)
        return False
    return True


class Journal:
    """The durable record of one batch: which requests exist, and how far each one got.

    Open with ``await Journal.open(path)`` (or ``async with await Journal.open(path) as j``).
    Every write is committed before its method returns, and runs shielded from cancellation,
    so a cancelled task never leaves a step unrecorded. Its methods are safe to call from any
    task of one event loop, but one batch at a time may run on a journal file (`run`): a second
    `generate_many` on the same file or object is refused with `JournalInUse`. After
    ``close()`` every method raises ``JournalError``.
    """

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        # Private: use Journal.open(), which does the blocking connect in a worker thread.
        self._conn: sqlite3.Connection | None = conn
        self._path = path
        self._lock = anyio.Lock()
        self._reserve: str | None = None  # the reserve file, while a batch runs and it exists
        self.problem: JournalError | None = None

    @classmethod
    async def open(cls, path: str | PathLike[str]) -> Journal:
        """Open the journal at ``path``, creating the file and its schema if it does not exist.

        Raises:
            JournalError: the file is not a journal, or has a schema version this code cannot read.
        """
        text = str(Path(path))
        conn = await anyio.to_thread.run_sync(_connect, text)
        return cls(conn, text)

    @property
    def path(self) -> str:
        return self._path

    @contextlib.asynccontextmanager
    async def run(self) -> AsyncIterator[None]:
        """Held by a batch while it uses the journal: the run lock and the disk reserve.

        Raises:
            JournalInUse: another batch holds it (in this process or another); nothing is sent.
            JournalError: the lock file cannot be created beside the journal.
        """
        lock = RunLock(self._path)
        reserve = self._path + ".reserve"
        await anyio.to_thread.run_sync(lock.__enter__)
        try:
            self._reserve = (
                reserve if await anyio.to_thread.run_sync(_make_reserve, reserve) else None
            )
            yield
        finally:
            self._reserve = None
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(_drop_reserve_and_unlock, reserve, lock)

    def __repr__(self) -> str:
        state = "closed" if self._conn is None else "open"
        return f"<Journal {self._path!r} {state}>"

    async def __aenter__(self) -> Journal:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection; calling it twice is harmless."""
        with anyio.CancelScope(shield=True):
            async with self._lock:
                conn, self._conn = self._conn, None
                if conn is not None:
                    await anyio.to_thread.run_sync(conn.close)

    async def _run(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        # Shielded: once a caller asks for a write it must reach the disk, even if the caller is
        # being cancelled (the thread would finish anyway; the shield also covers the lock wait).
        with anyio.CancelScope(shield=True):
            async with self._lock:
                conn = self._conn
                if conn is None:
                    raise JournalError(f"journal {self._path} is closed", path=self._path)
                result = await anyio.to_thread.run_sync(self._attempt, work, conn)
        return result

    def _attempt(self, work: Callable[[sqlite3.Connection], _T], conn: sqlite3.Connection) -> _T:
        """`work` in the worker thread; on a full disk, once more after freeing the reserve."""
        try:
            return work(conn)
        except sqlite3.Error as exc:
            full = _is_disk_full(exc)
            error = _journal_error(self._path, "using it", exc)
            if full and self.problem is None:
                self.problem = error
            reserve, self._reserve = self._reserve, None
            if not full or reserve is None:
                raise error from None
        with contextlib.suppress(OSError):
            os.unlink(reserve)
        try:
            return work(conn)
        except sqlite3.Error as exc:
            raise _journal_error(self._path, "using it", exc) from None

    async def register(
        self,
        requests: Sequence[Mapping[str, Any]],
        *,
        seen: dict[str, int] | None = None,
        first_index: int = 0,
    ) -> list[Entry]:
        """Record a batch's requests (if not yet known) and return their entries, in input order.

        The key of a request is ``f"{fingerprint(params)}#{n}"`` where ``n`` counts the identical
        requests before it in ``requests``: the same prompt twice is two songs, and registering the
        same input again finds the same keys and leaves their progress untouched.

        Args:
            requests: the requests, in input order.
            seen: occurrence counts carried over from earlier calls, for a batch registered
                chunk by chunk as it streams in (updated in place).
            first_index: the input position of ``requests[0]`` in the whole batch.
        """
        seen = {} if seen is None else seen
        rows: list[tuple[str, int, str]] = []
        for index, params in enumerate(requests, start=first_index):
            fp = fingerprint(params)
            occurrence = seen.get(fp, 0)
            seen[fp] = occurrence + 1
            # Stored as given (minus None) so the entry can be replayed as the same request.
            rows.append((f"{fp}#{occurrence}", index, _canonical_json(params).decode()))
        now = time.time()

        def work(conn: sqlite3.Connection) -> list[Entry]:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(
                    "INSERT INTO entries (key, idx, params, state, updated_at) "
                    "VALUES (?, ?, ?, 'pending', ?) ON CONFLICT (key) DO NOTHING",
                    [(key, index, params, now) for key, index, params in rows],
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            entries = []
            for key, _, _ in rows:
                row = conn.execute(
                    f"SELECT {_COLUMNS} FROM entries WHERE key = ?", (key,)
                ).fetchone()
                entries.append(_row_to_entry(row))
            return entries

        return await self._run(work)

    async def entries(self) -> list[Entry]:
        """Every entry, ordered by the position at which it was first registered."""

        def work(conn: sqlite3.Connection) -> list[Entry]:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM entries ORDER BY idx, key").fetchall()
            return [_row_to_entry(row) for row in rows]

        return await self._run(work)

    async def get(self, key: str) -> Entry:
        """The entry for ``key``; ``KeyError`` if no such entry was registered."""

        def work(conn: sqlite3.Connection) -> Entry:
            row = conn.execute(f"SELECT {_COLUMNS} FROM entries WHERE key = ?", (key,)).fetchone()
            if row is None:
                raise KeyError(key)
            return _row_to_entry(row)

        return await self._run(work)

    async def _update(
        self,
        key: str,
        assignments: str,
        values: tuple[Any, ...],
        *,
        only_from: str = "state != 'completed'",
    ) -> None:
        # A completed entry is final: it records a paid song, so no later step (a late failure
        # report, a retry decided before completion was seen) may overwrite it.
        sql = f"UPDATE entries SET {assignments}, updated_at = ? WHERE key = ? AND {only_from}"

        def work(conn: sqlite3.Connection) -> None:
            cursor = conn.execute(sql, (*values, time.time(), key))
            if cursor.rowcount == 0:
                exists = conn.execute("SELECT 1 FROM entries WHERE key = ?", (key,)).fetchone()
                if exists is None:
                    raise KeyError(key)

        await self._run(work)

    async def mark_submitting(
        self, key: str, *, client_ref: str, email: str | None, sent_at: float
    ) -> None:
        """Record that the POST for ``key`` is about to be sent; call it BEFORE sending.

        Clears any earlier jobid, job and error, so a failed entry can be tried again.
        """
        await self._update(
            key,
            "state = 'submitting', client_ref = ?, email = ?, sent_at = ?, jobid = NULL, "
            "job = NULL, error_type = NULL, error_message = NULL",
            (client_ref, email, sent_at),
        )

    async def mark_unsent(self, key: str) -> None:
        """Undo `mark_submitting`: no job was created (the POST was stopped before it left, or
        refused), so a rerun sends it. Only a ``submitting`` entry changes: one that got as far
        as a jobid keeps it."""
        await self._update(
            key,
            "state = 'pending', client_ref = NULL, sent_at = NULL",
            (),
            only_from="state = 'submitting'",
        )

    async def mark_submitted(self, key: str, *, jobid: str, email: str) -> None:
        """Record that the server accepted the job: from now on it can be polled by ``jobid``."""
        await self._update(key, "state = 'submitted', jobid = ?, email = ?", (jobid, email))

    async def mark_completed(self, key: str, *, job: Job) -> None:
        """Store the completed job record (clips and their URLs) as JSON."""
        await self._update(
            key,
            "state = 'completed', jobid = ?, email = ?, job = ?, error_type = NULL, "
            "error_message = NULL",
            (job.jobid, job.email, msgspec.json.encode(job).decode()),
        )

    async def mark_failed(self, key: str, *, error: BaseException) -> None:
        """Record a final failure: the error's type name and message, and its jobid/email if known.

        ``error`` is normally a ``FlowMusicError``; when it carries a job record (``JobFailed``)
        the record is stored too. A known jobid/email is kept when the error does not name one.
        """
        jobid = getattr(error, "jobid", None)
        email = getattr(error, "email", None)
        job = getattr(error, "job", None)
        job_json = msgspec.json.encode(job).decode() if isinstance(job, Job) else None
        await self._update(
            key,
            "state = 'failed', error_type = ?, error_message = ?, "
            "jobid = COALESCE(?, jobid), email = COALESCE(?, email), job = ?",
            (type(error).__name__, str(error), jobid, email, job_json),
        )
