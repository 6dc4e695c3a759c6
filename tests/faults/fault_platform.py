"""The workflow tests' fake platform, with scripted bursts of unavailability.

:class:`FaultyPlatform` is :class:`~tests.workflow.fake_platform.FakePlatform` plus a table of
**fault windows** in the same SQLite file, so the test process arms them and the Celery
workers (other processes) feel them. While a window is open, the matching start/poll calls
fail with :class:`~flywheel.errors.PlatformUnavailable`, the error the real adapters raise
for 5xx answers and timeouts:

* ``unavailable``: at once, like a 503 from the platform's gateway (nothing was done);
* ``timeout``: after a short delay, like a read timeout on a request the server never
  handled;
* ``lost_response``: the call *is* carried out, then the answer is lost (a timeout after the
  server acted). Starts being idempotent on their natural key, the retry must find the same
  work, not start it twice: the ledger shows one row with ``starts`` > 1.

A burst is armed as a *group* of windows that opens at the first call it matches (so its
timing does not depend on how fast the workers start); each window opens ``after_s`` later
and lasts ``seconds``. Every fault raised is counted in ``fault_hits``, so a test can prove
its burst was felt.

The stop and delete calls (:data:`COUNTED_OPS`) fail by count instead of by time:
:meth:`FaultyPlatform.fail_next` makes the next *n* calls of one answer unavailable, then
lets them through ("unavailable twice, then fine").
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any, Literal

from flywheel.config.schema import CandidateModel, JobConfig
from flywheel.errors import PlatformUnavailable
from flywheel.platforms.base import EvalType, Handle, Progress
from flywheel.settings import Settings
from tests.workflow.fake_platform import ENV_DB, FakePlatform

FaultMode = Literal["unavailable", "timeout", "lost_response"]
OPS = (
    "start_deployment",
    "poll_deployment",
    "start_evaluation",
    "poll_evaluation",
    "start_customization",
    "poll_customization",
)
COUNTED_OPS = (
    "shutdown_deployment",
    "cancel_evaluation",
    "cancel_customization",
    "delete_datasets",
    "delete_evaluation",
    "delete_customization",
    "release_job",
)
TIMEOUT_DELAY_S = 0.2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS faults (
  grp TEXT, op TEXT, candidate TEXT, item TEXT, mode TEXT, after_s REAL, seconds REAL,
  opens REAL, closes REAL
);
CREATE TABLE IF NOT EXISTS fault_hits (op TEXT, candidate TEXT, item TEXT, mode TEXT, at REAL);
CREATE TABLE IF NOT EXISTS fault_counts (op TEXT PRIMARY KEY, times INTEGER);
"""


class FaultyPlatform(FakePlatform):
    """A :class:`FakePlatform` whose start/poll calls fail during armed windows."""

    def __init__(self, db: Path) -> None:
        """Open the fake's database and its fault tables."""
        super().__init__(db)
        with self._tx() as conn:
            for statement in _SCHEMA.strip().split(";"):
                if statement.strip():
                    conn.execute(statement)

    # -- arming ---------------------------------------------------------------------------
    def inject(
        self,
        ops: str | tuple[str, ...],
        *,
        seconds: float,
        mode: FaultMode = "unavailable",
        candidate: str | None = None,
        item: str | None = None,
        after_s: float = 0.0,
        group: str | None = None,
    ) -> None:
        """Fail ``ops`` (names from :data:`OPS`) for ``seconds``.

        The window opens ``after_s`` after the first call matching any window of its
        ``group`` (default: a group of its own). ``candidate``/``item`` narrow it to one
        candidate's calls (``item``: an evaluation type or ``customize``).
        """
        names = (ops,) if isinstance(ops, str) else ops
        unknown = set(names) - set(OPS)
        assert not unknown, f"unknown platform operations {unknown}"
        grp = group or uuid.uuid4().hex
        with self._tx() as conn:
            conn.executemany(
                "INSERT INTO faults VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
                [(grp, op, candidate, item, mode, after_s, seconds) for op in names],
            )

    def fail_next(self, op: str, *, times: int) -> None:
        """Answer the next ``times`` calls of ``op`` (one of :data:`COUNTED_OPS`) unavailable."""
        assert op in COUNTED_OPS, f"unknown counted operation {op!r}"
        with self._tx() as conn:
            conn.execute("INSERT OR REPLACE INTO fault_counts VALUES (?, ?)", (op, times))

    def clear_faults(self) -> None:
        """Close every window (and forget every counted fault)."""
        with self._tx() as conn:
            conn.execute("DELETE FROM faults")
            conn.execute("DELETE FROM fault_counts")

    def fault_hits(self) -> list[dict[str, Any]]:
        """Every fault raised so far."""
        with self._tx() as conn:
            rows = conn.execute("SELECT op, candidate, item, mode, at FROM fault_hits").fetchall()
        return [dict(zip(("op", "candidate", "item", "mode", "at"), r, strict=True)) for r in rows]

    # -- the faults -----------------------------------------------------------------------
    def _armed(self, op: str, candidate: str, item: str | None) -> FaultMode | None:
        now = time.time()
        match = "op = ? AND (candidate IS NULL OR candidate = ?) AND (item IS NULL OR item IS ?)"
        with self._tx() as conn:
            # The first matching call opens its group's windows.
            for (grp,) in conn.execute(
                f"SELECT DISTINCT grp FROM faults WHERE opens IS NULL AND {match}",  # noqa: S608
                (op, candidate, item),
            ).fetchall():
                conn.execute(
                    "UPDATE faults SET opens = ? + after_s, closes = ? + after_s + seconds "
                    "WHERE grp = ?",
                    (now, now, grp),
                )
            row = conn.execute(
                "SELECT mode FROM faults WHERE op = ? AND opens <= ? AND ? < closes "
                "AND (candidate IS NULL OR candidate = ?) AND (item IS NULL OR item IS ?) "
                "LIMIT 1",
                (op, now, now, candidate, item),
            ).fetchone()
            if row is not None:
                conn.execute(
                    "INSERT INTO fault_hits VALUES (?, ?, ?, ?, ?)",
                    (op, candidate, item, row[0], now),
                )
        return None if row is None else row[0]

    @staticmethod
    def _error(op: str, mode: FaultMode) -> PlatformUnavailable:
        if mode == "unavailable":
            return PlatformUnavailable(f"fake platform: {op} answered 503 Service Unavailable")
        return PlatformUnavailable(f"fake platform: {op} timed out after {TIMEOUT_DELAY_S} s")

    def _before(self, op: str, candidate: str, item: str | None) -> FaultMode | None:
        """Raise for ``unavailable``/``timeout``; return ``lost_response`` to raise after."""
        mode = self._armed(op, candidate, item)
        if mode == "timeout":
            time.sleep(TIMEOUT_DELAY_S)
        if mode in ("unavailable", "timeout"):
            raise self._error(op, mode)
        return mode

    def _handle_key(self, handle: Handle) -> tuple[str, str | None]:
        with self._tx() as conn:
            row = conn.execute(
                "SELECT candidate, item FROM work WHERE id = ?", (handle["id"],)
            ).fetchone()
        return ("", None) if row is None else (row[0], row[1])

    def _poll(self, op: str, handle: Handle, call: Any) -> Progress:
        candidate, item = self._handle_key(handle)
        lost = self._before(op, candidate, item)
        progress: Progress = call(handle)
        if lost:
            raise self._error(op, "lost_response")
        return progress

    def _counted(self, op: str) -> None:
        """Raise ``unavailable`` while ``op`` has counted faults left (one used per call)."""
        with self._tx() as conn:
            row = conn.execute(
                "UPDATE fault_counts SET times = times - 1 WHERE op = ? AND times > 0 "
                "RETURNING times",
                (op,),
            ).fetchone()
            if row is not None:
                conn.execute(
                    "INSERT INTO fault_hits VALUES (?, '', NULL, 'unavailable', ?)",
                    (op, time.time()),
                )
        if row is not None:
            raise self._error(op, "unavailable")

    # -- the faulted operations -----------------------------------------------------------
    def start_deployment(self, *, job_id: str, candidate: CandidateModel) -> Handle:
        """See :class:`FakePlatform`; faulted."""
        lost = self._before("start_deployment", candidate.name, None)
        handle = super().start_deployment(job_id=job_id, candidate=candidate)
        if lost:
            raise self._error("start_deployment", "lost_response")
        return handle

    def poll_deployment(self, handle: Handle) -> Progress:
        """See :class:`FakePlatform`; faulted."""
        return self._poll("poll_deployment", handle, super().poll_deployment)

    def start_evaluation(
        self,
        *,
        job_id: str,
        candidate: CandidateModel,
        eval_type: EvalType,
        datasets: Handle,
        config: JobConfig,
        deployment: Handle | None = None,
        customization: Handle | None = None,
    ) -> Handle:
        """See :class:`FakePlatform`; faulted."""
        lost = self._before("start_evaluation", candidate.name, eval_type)
        handle = super().start_evaluation(
            job_id=job_id,
            candidate=candidate,
            eval_type=eval_type,
            datasets=datasets,
            config=config,
            deployment=deployment,
            customization=customization,
        )
        if lost:
            raise self._error("start_evaluation", "lost_response")
        return handle

    def poll_evaluation(self, handle: Handle) -> Progress:
        """See :class:`FakePlatform`; faulted."""
        return self._poll("poll_evaluation", handle, super().poll_evaluation)

    def start_customization(
        self, *, job_id: str, candidate: CandidateModel, datasets: Handle, config: JobConfig
    ) -> Handle:
        """See :class:`FakePlatform`; faulted."""
        lost = self._before("start_customization", candidate.name, "customize")
        handle = super().start_customization(
            job_id=job_id, candidate=candidate, datasets=datasets, config=config
        )
        if lost:
            raise self._error("start_customization", "lost_response")
        return handle

    def poll_customization(self, handle: Handle) -> Progress:
        """See :class:`FakePlatform`; faulted."""
        return self._poll("poll_customization", handle, super().poll_customization)

    def shutdown_deployment(self, handle: Handle) -> None:
        """See :class:`FakePlatform`; faulted by count."""
        self._counted("shutdown_deployment")
        super().shutdown_deployment(handle)

    def cancel_evaluation(self, handle: Handle) -> None:
        """See :class:`FakePlatform`; faulted by count."""
        self._counted("cancel_evaluation")
        super().cancel_evaluation(handle)

    def cancel_customization(self, handle: Handle) -> None:
        """See :class:`FakePlatform`; faulted by count."""
        self._counted("cancel_customization")
        super().cancel_customization(handle)

    def delete_datasets(self, handle: Handle) -> None:
        """See :class:`FakePlatform`; faulted by count."""
        self._counted("delete_datasets")
        super().delete_datasets(handle)

    def delete_evaluation(self, handle: Handle) -> None:
        """See :class:`FakePlatform`; faulted by count."""
        self._counted("delete_evaluation")
        super().delete_evaluation(handle)

    def delete_customization(self, handle: Handle) -> None:
        """See :class:`FakePlatform`; faulted by count."""
        self._counted("delete_customization")
        super().delete_customization(handle)

    def release_job(self, job_id: str) -> list[str]:
        """See :class:`FakePlatform`; faulted by count."""
        self._counted("release_job")
        return super().release_job(job_id)


def from_env(settings: Settings) -> FaultyPlatform:
    """Factory for ``FLYWHEEL_PLATFORM=tests.faults.fault_platform:from_env`` (workers)."""
    return FaultyPlatform(Path(os.environ[ENV_DB]))
