"""Ports for the state store and the log store.

Adapters return domain objects, never BSON documents, ES hits or rows, and translate driver
errors into :mod:`flywheel.errors` (missing → ``NotFound``, duplicate or lost
compare-and-set → ``Conflict``, unreachable → ``StoreUnavailable``). One contract test
suite (``tests/contract``) runs against every adapter.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import timedelta
from typing import Any, Literal, Protocol

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
)
from flywheel.domain.logs import ChatLog, LogKind, RetrievalLog, WorkloadCount
from flywheel.errors import Conflict

LogRecordT = ChatLog | RetrievalLog


class StateStore(Protocol):
    """Jobs, candidate runs, named configs, API keys and promotions."""

    # -- jobs ---------------------------------------------------------------------------
    def create_job(self, job: Job) -> Job:
        """Insert a new job.

        Raises:
            Conflict: a job with this id exists.
        """
        ...

    def get_job(self, job_id: JobId) -> Job:
        """Return one job.

        Raises:
            NotFound: no such job.
        """
        ...

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
        """Newest first (``created_at`` desc, then ``id`` desc), filtered, cursor-paginated.

        ``client_ids`` restricts to a tenant scope (None: no restriction).

        ``summary=True`` is for listings: the heavy fields (``config``, ``state``,
        ``datasets``, ``dataset_stats``, ``recommendation``) are neither loaded nor parsed and
        come back at their defaults; every other field is as stored. Such a job is a partial
        view: never write it back, and ``get_job`` the job when the heavy fields are needed.

        Raises:
            ValidationFailed: the cursor is malformed.
        """
        ...

    def update_job(
        self,
        job_id: JobId,
        changes: Mapping[str, Any],
        *,
        expect_status: Iterable[JobStatus] | None = None,
        expect_version: int | None = None,
    ) -> Job:
        """Set top-level fields of a job atomically, bump ``version`` and ``updated_at``.

        The write happens only if the job's status is in ``expect_status`` and its version
        equals ``expect_version`` (each when given). Values are domain values (enums,
        datetimes, dicts) as on :class:`Job`.

        Returns:
            The job after the write.

        Raises:
            NotFound: no such job.
            Conflict: a precondition failed (someone else moved the job first).
        """
        ...

    def delete_job(self, job_id: JobId) -> None:
        """Delete a job and its candidate runs.

        Raises:
            NotFound: no such job.
        """
        ...

    def count_jobs(
        self, *, config_name: str | None = None, statuses: Iterable[JobStatus] | None = None
    ) -> int:
        """Count jobs, optionally those using a named config and/or in given statuses."""
        ...

    # -- candidate runs -----------------------------------------------------------------
    def put_candidate_run(self, run: CandidateRun) -> CandidateRun:
        """Insert the run for ``(job_id, name)`` if absent; return the stored one (idempotent)."""
        ...

    def list_candidate_runs(self, job_id: JobId) -> list[CandidateRun]:
        """All candidate runs of a job, in insertion order."""
        ...

    def update_candidate_run(
        self,
        job_id: JobId,
        name: str,
        changes: Mapping[str, Any],
        *,
        expect_version: int | None = None,
    ) -> CandidateRun:
        """Set top-level fields of one candidate run atomically (compare-and-set on version).

        Raises:
            NotFound: no such run.
            Conflict: the version changed.
        """
        ...

    # -- named configs ------------------------------------------------------------------
    def create_config(self, config: NamedConfig) -> NamedConfig:
        """Insert version 1 of a new named config.

        Raises:
            Conflict: a live config with this name exists.
        """
        ...

    def add_config_version(self, config: NamedConfig, *, expect_version: int) -> NamedConfig:
        """Insert ``expect_version + 1`` of an existing config (optimistic concurrency).

        Raises:
            NotFound: no such live config.
            Conflict: the latest version is not ``expect_version``.
        """
        ...

    def get_config(self, name: str, version: int | None = None) -> NamedConfig:
        """The latest (or a given) version of a live config.

        Raises:
            NotFound: unknown name or version, or the config was deleted.
        """
        ...

    def list_configs(self) -> list[NamedConfig]:
        """Latest version of each live config, by name."""
        ...

    def list_config_versions(self, name: str) -> list[NamedConfig]:
        """All versions of a config, oldest first.

        Raises:
            NotFound: unknown name.
        """
        ...

    def delete_config(self, name: str) -> None:
        """Soft-delete a config (its versions stay readable for jobs that pinned them).

        Raises:
            NotFound: unknown name.
        """
        ...

    # -- API keys -----------------------------------------------------------------------
    def create_key(self, key: ApiKey) -> ApiKey:
        """Store a new key (hash only)."""
        ...

    def find_key(self, key_hash: str) -> ApiKey | None:
        """The non-revoked key with this hash, or None."""
        ...

    def list_keys(self) -> list[ApiKey]:
        """All keys, newest first."""
        ...

    def revoke_key(self, key_id: KeyId) -> None:
        """Mark a key revoked.

        Raises:
            NotFound: unknown key id.
        """
        ...

    # -- promotions ---------------------------------------------------------------------
    # The promotion in force for a workload is its newest one not rolled back. Changing it
    # is a compare-and-set on that promotion's id, so two people acting on the same view
    # cannot both win: the second gets a Conflict naming what is in force now.
    def add_promotion(self, promotion: Promotion, *, expected_current: str | None) -> Promotion:
        """Record ``promotion`` as the one in force, if ``expected_current`` still is.

        ``expected_current`` is the id of the promotion the caller saw in force (None: it saw
        none). The check and the write are one atomic step. The stored promotion sorts
        newest (its ``promoted_at`` is moved just after the current one's if a clock lags).

        Raises:
            Conflict: another promotion or rollback came first (see :func:`promotion_moved`),
                or a promotion with this id exists.
        """
        ...

    def list_promotions(self, client_id: str, workload_id: str) -> list[Promotion]:
        """Promotions for a workload, newest first (rolled-back ones included)."""
        ...

    def roll_back_promotion(
        self, client_id: str, workload_id: str, *, expected_current: str
    ) -> tuple[Promotion, Promotion | None]:
        """Flag ``expected_current`` rolled back, if it is still the one in force.

        Returns the rolled-back promotion and the one in force now (None: the configured
        model serves again). The check and the write are one atomic step.

        Raises:
            Conflict: the promotion in force is another one, or none is.
        """
        ...

    def record_promotion_webhook(
        self,
        promotion_id: str,
        outcome: WebhookOutcome,
        *,
        event: Literal["promotion", "rollback"],
    ) -> Promotion:
        """Keep the webhook outcome of a promotion's ``promotion`` or ``rollback`` event.

        Raises:
            NotFound: unknown promotion id.
        """
        ...

    # -- lifecycle ----------------------------------------------------------------------
    def ping(self) -> None:
        """Check the store answers.

        Raises:
            StoreUnavailable: it does not.
        """
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class LogStore(Protocol):
    """Production logs (chat and retrieval), keyed by ``(client_id, workload_id)``."""

    def write(self, records: Iterable[LogRecordT]) -> int:
        """Bulk-insert records (streamed in batches); return how many were written."""
        ...

    def count(
        self,
        client_id: str,
        workload_id: str,
        *,
        kind: LogKind | None = None,
        since_ms: int | None = None,
    ) -> int:
        """How many records a pair holds (optionally of one kind, at or after ``since_ms``)."""
        ...

    def iter_recent(
        self,
        client_id: str,
        workload_id: str,
        *,
        limit: int,
        kind: LogKind | None = None,
        batch_size: int = 1000,
    ) -> Iterator[LogRecordT]:
        """Yield the newest ``limit`` records of a pair, newest first.

        Memory is bounded by ``batch_size``, not by the store (ES: point-in-time +
        ``search_after`` with a tiebreaker; SQLite: keyset pagination).
        """
        ...

    def delete(self, client_id: str, workload_id: str) -> int:
        """Delete a pair's records; return how many were removed."""
        ...

    def list_workloads(self) -> list[WorkloadCount]:
        """Every pair with its record count per kind (for the console's job form)."""
        ...

    def ping(self) -> None:
        """Check the store answers.

        Raises:
            StoreUnavailable: it does not.
        """
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def promotion_moved(
    client_id: str, workload_id: str, current: Promotion | None, expected: str | None
) -> Conflict:
    """The error of a lost promotion compare-and-set: what is in force now, and the fix."""
    saw = f"promotion {expected}" if expected else "no promotion"
    if current is None:
        now = "no model is promoted now (the configured model serves)"
        retry = "expected_current=null"
    else:
        by = f" by {current.promoted_by}" if current.promoted_by else ""
        now = (
            f"promotion {current.id} is in force now ({current.model}, {current.variant}, "
            f"promoted {current.promoted_at.isoformat()}{by})"
        )
        retry = f"expected_current={current.id!r}"
    return Conflict(
        f"{client_id}/{workload_id} changed since you looked: you saw {saw}, but {now}; "
        f"reload the workload, check it, and retry with {retry} if you still want this"
    )


def sorted_after(promotion: Promotion, current: Promotion | None) -> Promotion:
    """``promotion``, its ``promoted_at`` moved 1 ms past ``current``'s if it would not sort after.

    Listings order by ``promoted_at`` then id; the promotion just put in force must come
    first even when this host's clock lags the one that recorded ``current``.
    """
    if current is None or promotion.promoted_at > current.promoted_at:
        return promotion
    return promotion.model_copy(
        update={"promoted_at": current.promoted_at + timedelta(milliseconds=1)}
    )
