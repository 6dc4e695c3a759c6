"""SQLite adapter of the state store: the embedded default, one file, shared by threads and
worker processes.

Each entity is a JSON document (``doc``, written and read back by pydantic) beside the
columns that queries filter and sort on, each indexed. Flags a store method flips
(``deleted``, ``revoked``, ``rolled_back``) live only in their column, so one ``UPDATE``
flips them. Every read-check-write runs inside ``BEGIN IMMEDIATE``: the write lock is taken
before the read, so a compare-and-set can never interleave with another process's. WAL mode
lets readers go on meanwhile; the busy timeout makes writers queue instead of failing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from flywheel.domain.jobs import (
    ApiKey,
    CandidateRun,
    Job,
    JobId,
    JobStatus,
    JobType,
    KeyId,
    NamedConfig,
    Page,
    Promotion,
    WebhookOutcome,
    utcnow,
)
from flywheel.errors import ConfigError, Conflict, NotFound
from flywheel.stores._sqlite_pool import SqlitePool
from flywheel.stores._state_inputs import (
    JOB_SUMMARY_OMITS,
    as_stored_time,
    check_limit,
    client_scope,
    decode_cursor,
    encode_cursor,
    fits_int64,
    normalized,
    validated_changes,
)
from flywheel.stores.base import promotion_moved, sorted_after

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_JOB_COLUMNS = (
    "status",
    "client_id",
    "workload_id",
    "job_type",
    "config_name",
    "created_ms",
    "version",
    "doc",
    "id",
)
_JOB_MANAGED = ("id", "version", "created_at", "updated_at")
# The stored document less the heavy fields, removed by SQLite before Python parses anything.
_JOB_SUMMARY_DOC = f"json_remove(doc, {', '.join(repr(f'$.{f}') for f in JOB_SUMMARY_OMITS)})"
_RUN_MANAGED = ("job_id", "name", "version", "created_at", "updated_at")

_SCHEMA = """
PRAGMA journal_mode = WAL;
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, status TEXT NOT NULL, client_id TEXT NOT NULL,
    workload_id TEXT NOT NULL, job_type TEXT NOT NULL, config_name TEXT,
    created_ms INTEGER NOT NULL, version INTEGER NOT NULL, doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_newest ON jobs (created_ms, id);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, created_ms, id);
CREATE INDEX IF NOT EXISTS jobs_client ON jobs (client_id, created_ms, id);
CREATE INDEX IF NOT EXISTS jobs_client_workload ON jobs (client_id, workload_id, created_ms, id);
CREATE INDEX IF NOT EXISTS jobs_workload ON jobs (workload_id, created_ms, id);
CREATE INDEX IF NOT EXISTS jobs_type ON jobs (job_type, created_ms, id);
CREATE INDEX IF NOT EXISTS jobs_config ON jobs (config_name, status);
CREATE TABLE IF NOT EXISTS candidate_runs (
    seq INTEGER PRIMARY KEY, job_id TEXT NOT NULL, name TEXT NOT NULL,
    version INTEGER NOT NULL, doc TEXT NOT NULL, UNIQUE (job_id, name)
);
CREATE TABLE IF NOT EXISTS configs (
    name TEXT NOT NULL, version INTEGER NOT NULL, deleted INTEGER NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE INDEX IF NOT EXISTS configs_live ON configs (deleted, name, version);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY, key_hash TEXT NOT NULL UNIQUE, revoked INTEGER NOT NULL,
    created_ms INTEGER NOT NULL, doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS api_keys_newest ON api_keys (created_ms, id);
CREATE TABLE IF NOT EXISTS promotions (
    id TEXT PRIMARY KEY, client_id TEXT NOT NULL, workload_id TEXT NOT NULL,
    promoted_ms INTEGER NOT NULL, rolled_back INTEGER NOT NULL, doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS promotions_workload
    ON promotions (client_id, workload_id, promoted_ms, id);
"""


def _ms(when: datetime) -> int:
    return (as_stored_time(when) - _EPOCH) // timedelta(milliseconds=1)


def _job_from_doc(doc: str) -> Job:
    return Job.model_validate_json(doc)


def _job_row(job: Job) -> tuple[Any, ...]:
    """Column values in the order of ``_JOB_COLUMNS``."""
    return (
        job.status,
        job.client_id,
        job.workload_id,
        job.job_type,
        job.config_name,
        _ms(job.created_at),
        job.version,
        job.model_dump_json(),
        job.id,
    )


def _run_from_doc(doc: str) -> CandidateRun:
    return CandidateRun.model_validate_json(doc)


def _config_from_row(doc: str, deleted: int) -> NamedConfig:
    return NamedConfig.model_validate_json(doc).model_copy(update={"deleted": bool(deleted)})


def _key_from_row(doc: str, revoked: int) -> ApiKey:
    return ApiKey.model_validate_json(doc).model_copy(update={"revoked": bool(revoked)})


def _promotion_from_row(doc: str, rolled_back: int) -> Promotion:
    return Promotion.model_validate_json(doc).model_copy(update={"rolled_back": bool(rolled_back)})


def _check_version(*, what: str, version: int, expect_version: int | None) -> None:
    if expect_version is not None and version != expect_version:
        raise Conflict(f"{what} is at version {version}, not {expect_version}")


class SqliteStateStore:
    """The :class:`~flywheel.stores.base.StateStore` port on one SQLite file."""

    def __init__(self, path: Path) -> None:
        """Open (creating if needed) the database at ``path`` and its schema."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = SqlitePool(path, label="SQLite state store")
        with self._db.connection() as conn:
            conn.executescript(_SCHEMA)

    @classmethod
    def from_url(cls, url: str) -> SqliteStateStore:
        """Open ``sqlite:///abs/path.db``.

        Raises:
            ConfigError: the URL names no file.
        """
        path = unquote(urlsplit(url).path)
        if path in ("", "/"):
            raise ConfigError(f"state store URL {url!r} names no file; use sqlite:///abs/path.db")
        return cls(Path(path))

    # -- jobs ---------------------------------------------------------------------------
    def create_job(self, job: Job) -> Job:
        """See :meth:`StateStore.create_job`."""
        job = normalized(job)
        try:
            with self._db.connection() as conn:
                conn.execute(
                    f"INSERT INTO jobs ({', '.join(_JOB_COLUMNS)})"  # noqa: S608 -- constant names
                    f" VALUES ({', '.join('?' * len(_JOB_COLUMNS))})",
                    _job_row(job),
                )
        except sqlite3.IntegrityError as exc:
            raise Conflict(f"job {job.id} already exists") from exc
        return job

    def get_job(self, job_id: JobId) -> Job:
        """See :meth:`StateStore.get_job`."""
        row = self._db.one("SELECT doc FROM jobs WHERE id = ?", (job_id,))
        if row is None:
            raise NotFound(f"job {job_id} not found")
        return _job_from_doc(row[0])

    def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        client_id: str | None = None,
        client_ids: Iterable[str] | None = None,
        workload_id: str | None = None,
        job_type: JobType | None = None,
        limit: int = 50,
        cursor: str | None = None,
        summary: bool = False,
    ) -> Page[Job]:
        """See :meth:`StateStore.list_jobs` (keyset pagination on the ``jobs_*`` indexes)."""
        check_limit(limit)
        scope = client_scope(client_id, client_ids)
        if scope == []:
            return Page[Job](items=[])
        clauses, params = ["1"], list[Any]()
        for column, value in (("status", status), ("workload_id", workload_id)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if job_type is not None:
            clauses.append("job_type = ?")
            params.append(job_type)
        if scope is not None:
            clauses.append(f"client_id IN ({', '.join('?' * len(scope))})")
            params.extend(scope)
        if cursor is not None:
            after, after_id = decode_cursor(cursor)
            clauses.append("(created_ms, id) < (?, ?)")
            params.extend((_ms(after), after_id))
        rows = self._db.all(
            f"SELECT {_JOB_SUMMARY_DOC if summary else 'doc'} FROM jobs"  # noqa: S608 -- constant clauses, bound values
            f" WHERE {' AND '.join(clauses)}"
            " ORDER BY created_ms DESC, id DESC LIMIT ?",
            [*params, limit + 1],
        )
        items = [_job_from_doc(doc) for (doc,) in rows[:limit]]
        more = len(rows) > limit
        return Page[Job](
            items=items,
            next_cursor=encode_cursor(items[-1].created_at, items[-1].id) if more else None,
        )

    def update_job(
        self,
        job_id: JobId,
        changes: Mapping[str, Any],
        *,
        expect_status: Iterable[JobStatus] | None = None,
        expect_version: int | None = None,
    ) -> Job:
        """See :meth:`StateStore.update_job`."""
        clean = validated_changes(Job, changes, protected=_JOB_MANAGED)
        statuses = None if expect_status is None else frozenset(expect_status)
        with self._db.transaction() as conn:
            row = conn.execute("SELECT doc FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise NotFound(f"job {job_id} not found")
            current = _job_from_doc(row[0])
            if statuses is not None and current.status not in statuses:
                raise Conflict(
                    f"job {job_id} is {current.status}, not {'/'.join(sorted(statuses))}"
                )
            _check_version(
                what=f"job {job_id}", version=current.version, expect_version=expect_version
            )
            job = current.model_copy(
                update={**clean, "version": current.version + 1, "updated_at": utcnow()}
            )
            updated = conn.execute(
                f"UPDATE jobs SET {', '.join(f'{c} = ?' for c in _JOB_COLUMNS)}"  # noqa: S608 -- constant names
                " WHERE id = ? AND version = ?",
                (*_job_row(job), job_id, current.version),
            )
            if updated.rowcount != 1:  # cannot happen under BEGIN IMMEDIATE; guards a refactor
                raise Conflict(f"job {job_id} changed during the update")
        return job

    def delete_job(self, job_id: JobId) -> None:
        """See :meth:`StateStore.delete_job`."""
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM candidate_runs WHERE job_id = ?", (job_id,))
            if conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,)).rowcount == 0:
                raise NotFound(f"job {job_id} not found")

    def count_jobs(
        self, *, config_name: str | None = None, statuses: Iterable[JobStatus] | None = None
    ) -> int:
        """See :meth:`StateStore.count_jobs`."""
        clauses, params = ["1"], list[Any]()
        if config_name is not None:
            clauses.append("config_name = ?")
            params.append(config_name)
        if statuses is not None:
            wanted = sorted(set(statuses))
            clauses.append(f"status IN ({', '.join('?' * len(wanted))})")
            params.extend(wanted)
        row = self._db.one(f"SELECT COUNT(*) FROM jobs WHERE {' AND '.join(clauses)}", params)  # noqa: S608 -- constant clauses, bound values
        assert row is not None  # COUNT always yields a row
        return int(row[0])

    # -- candidate runs -----------------------------------------------------------------
    def put_candidate_run(self, run: CandidateRun) -> CandidateRun:
        """See :meth:`StateStore.put_candidate_run`."""
        run = normalized(run)
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO candidate_runs (job_id, name, version, doc)"
                " VALUES (?, ?, ?, ?)",
                (run.job_id, run.name, run.version, run.model_dump_json()),
            )
            row = conn.execute(
                "SELECT doc FROM candidate_runs WHERE job_id = ? AND name = ?",
                (run.job_id, run.name),
            ).fetchone()
        return _run_from_doc(row[0])

    def list_candidate_runs(self, job_id: JobId) -> list[CandidateRun]:
        """See :meth:`StateStore.list_candidate_runs`."""
        rows = self._db.all(
            "SELECT doc FROM candidate_runs WHERE job_id = ? ORDER BY seq", (job_id,)
        )
        return [_run_from_doc(doc) for (doc,) in rows]

    def update_candidate_run(
        self,
        job_id: JobId,
        name: str,
        changes: Mapping[str, Any],
        *,
        expect_version: int | None = None,
    ) -> CandidateRun:
        """See :meth:`StateStore.update_candidate_run`."""
        clean = validated_changes(CandidateRun, changes, protected=_RUN_MANAGED)
        what = f"candidate run {name!r} of job {job_id}"
        with self._db.transaction() as conn:
            row = conn.execute(
                "SELECT doc FROM candidate_runs WHERE job_id = ? AND name = ?", (job_id, name)
            ).fetchone()
            if row is None:
                raise NotFound(f"{what} not found")
            current = _run_from_doc(row[0])
            _check_version(what=what, version=current.version, expect_version=expect_version)
            run = current.model_copy(
                update={**clean, "version": current.version + 1, "updated_at": utcnow()}
            )
            conn.execute(
                "UPDATE candidate_runs SET version = ?, doc = ? WHERE job_id = ? AND name = ?",
                (run.version, run.model_dump_json(), job_id, name),
            )
        return run

    # -- named configs ------------------------------------------------------------------
    def _insert_config(self, conn: sqlite3.Connection, config: NamedConfig) -> NamedConfig:
        stored = normalized(config).model_copy(update={"deleted": False})
        conn.execute(
            "INSERT INTO configs (name, version, deleted, doc) VALUES (?, ?, 0, ?)",
            (stored.name, stored.version, stored.model_dump_json()),
        )
        return stored

    def create_config(self, config: NamedConfig) -> NamedConfig:
        """See :meth:`StateStore.create_config`.

        The stored version is 1 for a new name; a name deleted before continues after its
        old versions, so a (name, version) pair pinned by a job always means one body.
        """
        with self._db.transaction() as conn:
            live, latest = conn.execute(
                "SELECT COALESCE(SUM(deleted = 0), 0), COALESCE(MAX(version), 0)"
                " FROM configs WHERE name = ?",
                (config.name,),
            ).fetchone()
            if live:
                raise Conflict(f"config {config.name!r} already exists")
            return self._insert_config(conn, config.model_copy(update={"version": latest + 1}))

    def add_config_version(self, config: NamedConfig, *, expect_version: int) -> NamedConfig:
        """See :meth:`StateStore.add_config_version`."""
        with self._db.transaction() as conn:
            row = conn.execute(
                "SELECT version, deleted FROM configs WHERE name = ? ORDER BY version DESC",
                (config.name,),
            ).fetchone()
            if row is None or row[1]:
                raise NotFound(f"config {config.name!r} not found")
            _check_version(
                what=f"config {config.name!r}", version=row[0], expect_version=expect_version
            )
            return self._insert_config(
                conn, config.model_copy(update={"version": expect_version + 1})
            )

    def get_config(self, name: str, version: int | None = None) -> NamedConfig:
        """See :meth:`StateStore.get_config` (a pinned version stays readable once deleted)."""
        if version is not None and not fits_int64(version):  # no stored version can match
            raise NotFound(f"config {name!r} v{version} not found")
        if version is None:
            row = self._db.one(
                "SELECT doc, deleted FROM configs WHERE name = ? AND deleted = 0"
                " ORDER BY version DESC",
                (name,),
            )
        else:
            row = self._db.one(
                "SELECT doc, deleted FROM configs WHERE name = ? AND version = ?", (name, version)
            )
        if row is None:
            raise NotFound(f"config {name!r}{'' if version is None else f' v{version}'} not found")
        return _config_from_row(*row)

    def list_configs(self) -> list[NamedConfig]:
        """See :meth:`StateStore.list_configs`."""
        # SQLite returns the bare columns of the row holding MAX(version) within each group.
        rows = self._db.all(
            "SELECT doc, deleted, MAX(version) FROM configs WHERE deleted = 0"
            " GROUP BY name ORDER BY name"
        )
        return [_config_from_row(doc, deleted) for doc, deleted, _ in rows]

    def list_config_versions(self, name: str) -> list[NamedConfig]:
        """See :meth:`StateStore.list_config_versions` (deleted versions included)."""
        rows = self._db.all(
            "SELECT doc, deleted FROM configs WHERE name = ? ORDER BY version", (name,)
        )
        if not rows:
            raise NotFound(f"config {name!r} not found")
        return [_config_from_row(*row) for row in rows]

    def delete_config(self, name: str) -> None:
        """See :meth:`StateStore.delete_config`."""
        with self._db.connection() as conn:
            updated = conn.execute(
                "UPDATE configs SET deleted = 1 WHERE name = ? AND deleted = 0", (name,)
            )
            if updated.rowcount == 0:
                raise NotFound(f"config {name!r} not found")

    # -- API keys -----------------------------------------------------------------------
    def create_key(self, key: ApiKey) -> ApiKey:
        """See :meth:`StateStore.create_key`.

        Raises:
            Conflict: the id or the hash is already stored.
        """
        key = normalized(key)
        try:
            with self._db.connection() as conn:
                conn.execute(
                    "INSERT INTO api_keys (id, key_hash, revoked, created_ms, doc)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (key.id, key.key_hash, key.revoked, _ms(key.created_at), key.model_dump_json()),
                )
        except sqlite3.IntegrityError as exc:
            raise Conflict(f"API key {key.id} (or its hash) already exists") from exc
        return key

    def find_key(self, key_hash: str) -> ApiKey | None:
        """See :meth:`StateStore.find_key`."""
        row = self._db.one(
            "SELECT doc, revoked FROM api_keys WHERE key_hash = ? AND revoked = 0", (key_hash,)
        )
        return None if row is None else _key_from_row(*row)

    def list_keys(self) -> list[ApiKey]:
        """See :meth:`StateStore.list_keys`."""
        rows = self._db.all("SELECT doc, revoked FROM api_keys ORDER BY created_ms DESC, id DESC")
        return [_key_from_row(*row) for row in rows]

    def revoke_key(self, key_id: KeyId) -> None:
        """See :meth:`StateStore.revoke_key`."""
        with self._db.connection() as conn:
            if (
                conn.execute("UPDATE api_keys SET revoked = 1 WHERE id = ?", (key_id,)).rowcount
                == 0
            ):
                raise NotFound(f"API key {key_id} not found")

    # -- promotions ---------------------------------------------------------------------
    @staticmethod
    def _current_promotion(
        conn: sqlite3.Connection, client_id: str, workload_id: str
    ) -> Promotion | None:
        row = conn.execute(
            "SELECT doc, rolled_back FROM promotions WHERE client_id = ? AND workload_id = ?"
            " AND rolled_back = 0 ORDER BY promoted_ms DESC, id DESC LIMIT 1",
            (client_id, workload_id),
        ).fetchone()
        return None if row is None else _promotion_from_row(*row)

    def add_promotion(self, promotion: Promotion, *, expected_current: str | None) -> Promotion:
        """See :meth:`StateStore.add_promotion` (the check and insert share one transaction).

        Raises:
            Conflict: the promotion in force is not ``expected_current``, or the id exists.
        """
        client_id, workload_id = promotion.client_id, promotion.workload_id
        with self._db.transaction() as conn:
            current = self._current_promotion(conn, client_id, workload_id)
            if (current.id if current else None) != expected_current:
                raise promotion_moved(client_id, workload_id, current, expected_current)
            promotion = normalized(sorted_after(promotion, current))
            try:
                conn.execute(
                    "INSERT INTO promotions (id, client_id, workload_id, promoted_ms, rolled_back,"
                    " doc) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        *(promotion.id, client_id, workload_id),
                        *(_ms(promotion.promoted_at), promotion.rolled_back),
                        promotion.model_dump_json(),
                    ),
                )
            except sqlite3.IntegrityError as exc:
                raise Conflict(f"promotion {promotion.id} already exists") from exc
        return promotion

    def list_promotions(self, client_id: str, workload_id: str) -> list[Promotion]:
        """See :meth:`StateStore.list_promotions`."""
        rows = self._db.all(
            "SELECT doc, rolled_back FROM promotions WHERE client_id = ? AND workload_id = ?"
            " ORDER BY promoted_ms DESC, id DESC",
            (client_id, workload_id),
        )
        return [_promotion_from_row(*row) for row in rows]

    def roll_back_promotion(
        self, client_id: str, workload_id: str, *, expected_current: str
    ) -> tuple[Promotion, Promotion | None]:
        """See :meth:`StateStore.roll_back_promotion` (check and update in one transaction)."""
        with self._db.transaction() as conn:
            current = self._current_promotion(conn, client_id, workload_id)
            if current is None or current.id != expected_current:
                raise promotion_moved(client_id, workload_id, current, expected_current)
            conn.execute("UPDATE promotions SET rolled_back = 1 WHERE id = ?", (current.id,))
            now = self._current_promotion(conn, client_id, workload_id)
        return current.model_copy(update={"rolled_back": True}), now

    def record_promotion_webhook(
        self,
        promotion_id: str,
        outcome: WebhookOutcome,
        *,
        event: Literal["promotion", "rollback"],
    ) -> Promotion:
        """See :meth:`StateStore.record_promotion_webhook`."""
        field = "webhook" if event == "promotion" else "rollback_webhook"
        with self._db.transaction() as conn:
            row = conn.execute(
                "SELECT doc, rolled_back FROM promotions WHERE id = ?", (promotion_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"promotion {promotion_id} not found")
            updated = _promotion_from_row(*row).model_copy(update={field: normalized(outcome)})
            conn.execute(
                "UPDATE promotions SET doc = ? WHERE id = ?",
                (updated.model_dump_json(), promotion_id),
            )
        return updated

    # -- lifecycle ----------------------------------------------------------------------
    def ping(self) -> None:
        """See :meth:`StateStore.ping`."""
        self._db.one("SELECT 1", ())

    def close(self) -> None:
        """Close every connection this store opened."""
        self._db.close()
