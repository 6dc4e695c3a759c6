"""A small pool of SQLite connections to one file, for use from many threads.

sqlite3 connections must not be used by two threads at once, but one may move between
threads between uses. Lending a connection per call (instead of one per thread) keeps the
count bounded by concurrency, not by how many threads ever touched the store.
"""

from __future__ import annotations

import contextlib
import queue
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from flywheel.errors import StoreUnavailable

_BUSY_TIMEOUT_S = 10.0
# Result codes that mean "try again later", not "this code is wrong".
_TRANSIENT_CODES = frozenset(
    {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR}
)


class SqlitePool:
    """Connections to ``path`` in autocommit mode (transactions are explicit), WAL-friendly."""

    def __init__(self, path: Path, *, label: str) -> None:
        """``label`` names the store in errors (e.g. "SQLite state store")."""
        self._path = path
        self._label = label
        self._idle: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._opened: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _unavailable(self, exc: sqlite3.Error) -> StoreUnavailable:
        return StoreUnavailable(f"{self._label} {self._path}: {exc}")

    def _connect(self) -> sqlite3.Connection:
        # check_same_thread=False: a lent connection may move threads between uses.
        # isolation_level=None: transactions are the explicit BEGIN IMMEDIATE below.
        try:
            conn = sqlite3.connect(
                self._path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
        except sqlite3.OperationalError as exc:
            raise self._unavailable(exc) from exc
        conn.execute("PRAGMA synchronous = NORMAL")  # durable across app crashes under WAL
        with self._lock:
            self._opened.append(conn)
        return conn

    @contextlib.contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """Lend a connection; transient SQLite failures become ``StoreUnavailable``."""
        try:
            conn = self._idle.get_nowait()
        except queue.Empty:
            conn = self._connect()
        try:
            yield conn
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF in _TRANSIENT_CODES:
                raise self._unavailable(exc) from exc
            raise
        finally:
            self._idle.put(conn)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that holds the write lock from its first read.

        ``BEGIN IMMEDIATE`` makes read-check-write atomic across threads and processes; the
        busy timeout makes a second writer wait for the first instead of failing.
        """
        with self.connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def one(self, sql: str, params: Iterable[Any] = ()) -> tuple[Any, ...] | None:
        """The first row of a query, or None."""
        with self.connection() as conn:
            row: tuple[Any, ...] | None = conn.execute(sql, tuple(params)).fetchone()
            return row

    def all(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """Every row of a query."""
        with self.connection() as conn:
            return conn.execute(sql, tuple(params)).fetchall()

    def close(self) -> None:
        """Close every connection the pool opened."""
        with self._lock:
            opened, self._opened = self._opened, []
        for conn in opened:
            conn.close()
