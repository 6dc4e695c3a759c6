"""SQLite log store: the embedded default when ``ELASTICSEARCH_URL`` is unset.

One table holds both record kinds. The record itself lives in ``doc`` as JSON; the columns
beside it exist only to filter and order, so a read never re-assembles a record from columns.
``id`` (an autoincrement rowid) breaks timestamp ties: keyset pagination on
``(timestamp, id)`` never skips or repeats a record, however many share a millisecond.

One connection serves the process, guarded by a lock (sqlite3 connections are not safe to
use from two threads at once). WAL mode lets other processes read while this one writes.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson

from flywheel.domain.logs import LOG_RECORD_ADAPTER, LogKind, WorkloadCount
from flywheel.errors import ConfigError, StoreUnavailable
from flywheel.stores.base import LogRecordT

#: Records per transaction: large enough to amortise the commit, small enough to keep
#: memory flat and to let readers in between chunks.
WRITE_CHUNK = 2000
BUSY_TIMEOUT_S = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS logs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id   TEXT    NOT NULL,
    workload_id TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    timestamp   INTEGER NOT NULL,
    doc         TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_pair_recent
    ON logs (client_id, workload_id, timestamp DESC, id DESC);
"""

_INSERT = "INSERT INTO logs (client_id, workload_id, kind, timestamp, doc) VALUES (?, ?, ?, ?, ?)"


def _to_domain(doc: str) -> LogRecordT:
    # Full validation, not model_construct: it rebuilds nested models (RetrievedPassage) and
    # costs about the same as the JSON parse (measured: ~31k records/s either way for 2 KB).
    return LOG_RECORD_ADAPTER.validate_python(orjson.loads(doc))


def _row(record: LogRecordT) -> tuple[str, str, str, int, str]:
    # model_dump_json serialises in Rust without building a dict: ~2x faster than
    # orjson.dumps(model_dump(mode="json")) and it trusts the already-validated record.
    return (
        record.client_id,
        record.workload_id,
        record.kind.value,
        record.timestamp,
        record.model_dump_json(),
    )


def _pair_filter(
    client_id: str, workload_id: str, kind: LogKind | None, since_ms: int | None = None
) -> tuple[str, list[Any]]:
    clauses = ["client_id = ?", "workload_id = ?"]
    params: list[Any] = [client_id, workload_id]
    if kind is not None:
        clauses.append("kind = ?")
        params.append(kind.value)
    if since_ms is not None:
        clauses.append("timestamp >= ?")
        params.append(since_ms)
    return " AND ".join(clauses), params


class SqliteLogStore:
    """:class:`~flywheel.stores.base.LogStore` on one SQLite file."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        with self._translate("open"):
            path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, one per write chunk.
            self._conn = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            try:
                self._conn.execute("PRAGMA journal_mode=WAL")
                # NORMAL is durable across process crashes in WAL mode; only a power loss can
                # drop the last commits, which re-ingestion covers.
                self._conn.execute("PRAGMA synchronous=NORMAL")
                self._conn.executescript(_SCHEMA)
            except BaseException:
                self._conn.close()
                raise

    @classmethod
    def from_url(cls, url: str) -> SqliteLogStore:
        """Open (creating if needed) the database at ``sqlite:///abs/path.db``.

        Raises:
            ConfigError: the URL is not a ``sqlite:`` URL with a path.
            StoreUnavailable: the file cannot be opened.
        """
        parts = urlsplit(url)
        if parts.scheme.lower() != "sqlite" or parts.netloc or parts.path in ("", "/"):
            raise ConfigError(f"SQLite log store URL must look like sqlite:///abs/path.db: {url!r}")
        path = unquote(parts.path)
        # Settings build f"sqlite:///{abs_path}", i.e. four slashes; both spellings mean the same.
        if path.startswith("//"):
            path = path[1:]
        return cls(Path(path))

    @contextmanager
    def _translate(self, action: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.ProgrammingError:
            raise  # our bug or a closed store, not an unavailable one
        except (sqlite3.DatabaseError, OSError) as exc:
            raise StoreUnavailable(
                f"SQLite log store {self._path} failed to {action}: {exc}"
            ) from exc

    def write(self, records: Iterable[LogRecordT]) -> int:
        """Insert records in chunked transactions; a failure keeps the chunks already committed."""
        written = 0
        it = iter(records)
        while chunk := [_row(r) for r in islice(it, WRITE_CHUNK)]:
            with self._translate("write logs"), self._lock:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    self._conn.executemany(_INSERT, chunk)
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            written += len(chunk)
        return written

    def count(
        self,
        client_id: str,
        workload_id: str,
        *,
        kind: LogKind | None = None,
        since_ms: int | None = None,
    ) -> int:
        """Count a pair's records, optionally of one kind and at or after ``since_ms``."""
        where, params = _pair_filter(client_id, workload_id, kind, since_ms)
        with self._translate("count logs"), self._lock:
            (n,) = self._conn.execute(f"SELECT COUNT(*) FROM logs WHERE {where}", params).fetchone()  # noqa: S608 -- only our fixed clauses
        return int(n)

    def iter_recent(
        self,
        client_id: str,
        workload_id: str,
        *,
        limit: int,
        kind: LogKind | None = None,
        batch_size: int = 1000,
    ) -> Iterator[LogRecordT]:
        """Yield the newest ``limit`` records, newest first, ``batch_size`` rows per query."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        where, params = _pair_filter(client_id, workload_id, kind)
        first = f"SELECT id, timestamp, doc FROM logs WHERE {where}"  # noqa: S608 -- fixed clauses
        # Row-value comparison walks the (…, timestamp DESC, id DESC) index from the last key.
        after = first + " AND (timestamp, id) < (?, ?)"
        order = " ORDER BY timestamp DESC, id DESC LIMIT ?"
        remaining = limit
        last: tuple[int, int] | None = None
        while remaining > 0:
            size = min(batch_size, remaining)
            sql, args = (
                (first, [*params, size]) if last is None else (after, [*params, *last, size])
            )
            with self._translate("read logs"), self._lock:
                rows = self._conn.execute(sql + order, args).fetchall()
            for _, _, doc in rows:
                yield _to_domain(doc)
            if len(rows) < size:
                return
            remaining -= len(rows)
            last = (rows[-1][1], rows[-1][0])

    def delete(self, client_id: str, workload_id: str) -> int:
        """Delete a pair's records in one transaction."""
        with self._translate("delete logs"), self._lock:
            cur = self._conn.execute(
                "DELETE FROM logs WHERE client_id = ? AND workload_id = ?", (client_id, workload_id)
            )
        return cur.rowcount

    def list_workloads(self) -> list[WorkloadCount]:
        """Every pair and kind with its count and newest timestamp, sorted by pair."""
        with self._translate("list workloads"), self._lock:
            rows = self._conn.execute(
                "SELECT client_id, workload_id, kind, COUNT(*), MAX(timestamp) FROM logs"
                " GROUP BY client_id, workload_id, kind ORDER BY client_id, workload_id, kind"
            ).fetchall()
        return [
            WorkloadCount(
                client_id=c, workload_id=w, kind=LogKind(k), count=n, newest_timestamp=newest
            )
            for c, w, k, n, newest in rows
        ]

    def ping(self) -> None:
        """Run a trivial query.

        Raises:
            StoreUnavailable: the database cannot be read.
        """
        with self._translate("answer a ping"), self._lock:
            self._conn.execute("SELECT 1 FROM logs LIMIT 1").fetchall()

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            self._conn.close()
