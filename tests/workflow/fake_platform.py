"""An in-memory-like fake :class:`~flywheel.platforms.base.ModelPlatform` for workflow tests.

Its state lives in one SQLite file so that the test process and Celery worker processes
see the same platform. Lifecycles are scripted by duration (seconds from start to the
terminal state) and by failures; a **ledger** records every piece of work started,
cancelled, shut down and deleted, so tests can assert that cancellation stopped everything
and that no work was started twice.

Starts are idempotent on their natural key (job, candidate, kind, item) while the work is
live, as the port asks; ``starts`` counts the calls, so a test can tell "started once" from
"asked twice, deduplicated".

Evaluations produce predictions from the job's eval file: a candidate with ``accuracy``
``a`` answers the first ``a × n`` items exactly like the reference and calls a wrong tool on
the rest. Embedding evaluations rank the relevant documents first for the first ``a × n``
queries.
"""

from __future__ import annotations

import csv
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from flywheel.config.schema import CandidateModel, JobConfig
from flywheel.platforms.base import (
    DatasetFiles,
    EvalType,
    EvaluationOutcome,
    Handle,
    ItemPrediction,
    Progress,
    WorkState,
)
from flywheel.settings import Settings

ENV_DB = "FAKE_PLATFORM_DB"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS work (
  id TEXT PRIMARY KEY, kind TEXT, job_id TEXT, candidate TEXT, item TEXT,
  started_at REAL, cancelled_at REAL, shut_down_at REAL, deleted_at REAL, polls INTEGER,
  info TEXT, starts INTEGER
);
CREATE TABLE IF NOT EXISTS script (key TEXT PRIMARY KEY, value TEXT);
-- Per-job lookups (idempotent starts, release_job) stay cheap however long the history grows:
-- a soak runs thousands of jobs against one fake, and must measure the flywheel, not the fake.
CREATE INDEX IF NOT EXISTS work_by_job ON work (job_id, kind, candidate);
"""

DEFAULT_SCRIPT: dict[str, Any] = {
    "durations": {"deployment": 0.0, "evaluation": 0.0, "customization": 0.0},
    "fail": {},  # "candidate/kind[/item]" -> message (the work ends failed)
    "fail_start": {},  # "candidate/kind[/item]" -> message (start raises PlatformError)
    "accuracy": {},  # candidate -> share of eval items answered like the reference
    # Gates: a call at one of these points ("build_datasets": the worker's dataset build,
    # "evaluation_outcome": scoring at finalize, "shutdown_deployment": a deployment's
    # shutdown) waits while its gate is true (at most HOLD_MAX_S), so a test can catch a
    # step in the middle and release it later.
    "hold": {},
    "served": [],  # model names the platform already serves (is_model_served), e.g. a judge
    "peak_gpus": {},  # candidate -> GPUs held at its peak (peak_gpus), when not its own gpus
}

HOLD_MAX_S = 120.0


class FakePlatform:
    """A scripted platform with a ledger, shared across processes through SQLite."""

    name = "fake"

    def __init__(self, db: Path) -> None:
        """Open (and create) the fake's database at ``db``."""
        self.db = db
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        db.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.db, timeout=60)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
        finally:
            conn.close()

    # -- plumbing --------------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        # One connection per process (workers fork): opening one per call dominated the
        # cost of a step. The fake's data is disposable, so durability is off.
        pid = os.getpid()
        if self._conn is None or self._pid != pid:
            self._conn = sqlite3.connect(self.db, timeout=60, isolation_level=None)
            self._conn.execute("PRAGMA synchronous=OFF")
            self._pid = pid
        return self._conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def set_script(self, **script: Any) -> None:
        """Replace parts of the script (durations, fail, fail_start, accuracy)."""
        merged = {**self.script(), **script}
        with self._tx() as conn:
            conn.execute("DELETE FROM script WHERE key = 'script'")
            conn.execute(
                "INSERT INTO script VALUES ('script', ?)", (orjson.dumps(merged).decode(),)
            )

    def script(self) -> dict[str, Any]:
        """The current script."""
        with self._tx() as conn:
            row = conn.execute("SELECT value FROM script WHERE key='script'").fetchone()
        return {**DEFAULT_SCRIPT, **(orjson.loads(row[0]) if row else {})}

    def _start(
        self, kind: str, job_id: str, candidate: str, item: str | None, info: dict[str, Any]
    ) -> Handle:
        script = self.script()
        key = "/".join(x for x in (candidate, kind, item) if x)
        if key in script["fail_start"]:
            from flywheel.errors import PlatformError

            raise PlatformError(f"fake: {script['fail_start'][key]}")
        with self._tx() as conn:
            # Idempotent on the natural key while the work is live (see the port's contract).
            existing = conn.execute(
                "SELECT id FROM work WHERE kind = ? AND job_id = ? AND candidate = ? "
                "AND item IS ? AND cancelled_at IS NULL AND shut_down_at IS NULL",
                (kind, job_id, candidate, item),
            ).fetchone()
            if existing is not None:
                conn.execute("UPDATE work SET starts = starts + 1 WHERE id = ?", (existing[0],))
                return {"id": existing[0], "kind": kind}
            work_id = f"{kind}-{uuid.uuid4().hex[:10]}"
            conn.execute(
                "INSERT INTO work VALUES (?, ?, ?, ?, ?, ?, NULL, NULL, NULL, 0, ?, 1)",
                (work_id, kind, job_id, candidate, item, time.time(), orjson.dumps(info).decode()),
            )
        return {"id": work_id, "kind": kind}

    def hold(self, point: str) -> None:
        """Wait while the script's ``hold[point]`` gate is set (see ``DEFAULT_SCRIPT``)."""
        deadline = time.monotonic() + HOLD_MAX_S
        while self.script()["hold"].get(point) and time.monotonic() < deadline:
            with self._tx() as conn:
                conn.execute(
                    "INSERT OR REPLACE INTO script VALUES (?, ?)", (f"held:{point}", time.time())
                )
            time.sleep(0.05)

    def held(self, point: str) -> bool:
        """True once a call has waited at ``point``'s gate."""
        with self._tx() as conn:
            row = conn.execute("SELECT 1 FROM script WHERE key = ?", (f"held:{point}",)).fetchone()
        return row is not None

    def _row(self, handle: Handle) -> dict[str, Any]:
        with self._tx() as conn:
            conn.execute("UPDATE work SET polls = polls + 1 WHERE id = ?", (handle["id"],))
            row = conn.execute("SELECT * FROM work WHERE id = ?", (handle["id"],)).fetchone()
            names = [d[0] for d in conn.execute("SELECT * FROM work LIMIT 0").description]
        if row is None:
            raise KeyError(handle["id"])
        return dict(zip(names, row, strict=True))

    def _progress(self, handle: Handle, done: WorkState) -> Progress:
        row = self._row(handle)
        script = self.script()
        if row["cancelled_at"] is not None or row["shut_down_at"] is not None:
            return Progress(WorkState.cancelled, message="cancelled")
        duration = float(script["durations"].get(row["kind"], 0.0))
        elapsed = time.time() - row["started_at"]
        if elapsed >= duration:
            key = "/".join(x for x in (row["candidate"], row["kind"], row["item"]) if x)
            if key in script["fail"]:
                return Progress(WorkState.failed, message=f"fake: {script['fail'][key]}")
            details = (
                {
                    "output_model": f"{row['candidate']}-lora",
                    # A loss history in the shape NMP's status and the local trainer report.
                    "train_loss": [2.0, 1.6, 1.3, 1.1, 0.9, 0.8],
                    "val_loss": [1.4, 1.0],
                    "steps": 6,
                    "epochs_completed": 2,
                }
                if row["kind"] == "customization"
                else {}
            )
            return Progress(done, percent=100.0, details=details)
        percent = 100.0 * elapsed / duration if duration else 0.0
        return Progress(WorkState.running, percent=round(percent, 1))

    def _mark(self, handle: Handle, column: str) -> None:
        with self._tx() as conn:
            conn.execute(
                f"UPDATE work SET {column} = COALESCE({column}, ?) WHERE id = ?",  # noqa: S608
                (time.time(), handle["id"]),
            )

    # -- the ledger ------------------------------------------------------------------------
    def ledger(self, job_id: str | None = None) -> list[dict[str, Any]]:
        """Every piece of work ever started (or only ``job_id``'s), with when it was
        cancelled/shut down/deleted."""
        where, params = ("WHERE job_id = ?", (job_id,)) if job_id is not None else ("", ())
        with self._tx() as conn:
            cur = conn.execute(f"SELECT * FROM work {where} ORDER BY started_at", params)  # noqa: S608
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def live(self, job_id: str | None = None) -> list[dict[str, Any]]:
        """Work still holding resources: deployments not shut down, evals/trainings running
        (of every job, or only ``job_id``'s)."""
        script = self.script()
        now = time.time()
        out = []
        for row in self.ledger(job_id):
            if row["kind"] == "datasets":
                continue
            if row["kind"] == "deployment":
                if row["shut_down_at"] is None:
                    out.append(row)
                continue
            finished = now - row["started_at"] >= float(script["durations"].get(row["kind"], 0))
            if row["cancelled_at"] is None and not finished:
                out.append(row)
        return out

    # -- ModelPlatform ---------------------------------------------------------------------
    def upload_datasets(self, *, job_id: str, files: DatasetFiles) -> Handle:
        """Record the local file paths."""
        info = {
            "eval": str(files.eval) if files.eval else None,
            "icl": {k: str(v) for k, v in files.icl_eval.items()},
            "beir_dir": str(files.beir_dir) if files.beir_dir else None,
        }
        handle = self._start("datasets", job_id, "", None, info)
        return {**handle, **info}

    def delete_datasets(self, handle: Handle) -> None:
        """Mark deleted."""
        self._mark(handle, "deleted_at")

    def start_deployment(self, *, job_id: str, candidate: CandidateModel) -> Handle:
        """Start a scripted deployment."""
        return self._start("deployment", job_id, candidate.name, None, {})

    def poll_deployment(self, handle: Handle) -> Progress:
        """Ready after the scripted duration."""
        return self._progress(handle, WorkState.ready)

    def shutdown_deployment(self, handle: Handle) -> None:
        """Mark shut down (idempotent); waits at the ``shutdown_deployment`` gate first."""
        self.hold("shutdown_deployment")
        self._mark(handle, "shut_down_at")

    def is_model_served(self, model_name: str) -> bool:
        """True for the script's ``served`` models."""
        return model_name in self.script()["served"]

    def peak_gpus(self, candidate: CandidateModel) -> int:
        """The script's ``peak_gpus`` for the candidate, else its own ``gpus``."""
        return int(self.script()["peak_gpus"].get(candidate.name, candidate.gpus))

    def release_job(self, job_id: str) -> list[str]:
        """Stop the job's live work: shut deployments down, cancel the rest."""
        stopped = []
        for row in self.live(job_id):
            column = "shut_down_at" if row["kind"] == "deployment" else "cancelled_at"
            self._mark({"id": row["id"]}, column)
            stopped.append(f"{row['kind']} {row['id']}")
        return stopped

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
        """Start a scripted evaluation over the job's eval file."""
        if eval_type == "customized" and customization is None:
            raise AssertionError("a customized evaluation needs the customization handle")
        eval_file = datasets.get("icl", {}).get(candidate.name) if eval_type == "icl" else None
        info = {
            "eval": eval_file or datasets.get("eval"),
            "beir_dir": datasets.get("beir_dir"),
        }
        handle = self._start("evaluation", job_id, candidate.name, eval_type, info)
        return {**handle, "eval_type": eval_type}

    def poll_evaluation(self, handle: Handle) -> Progress:
        """Completed after the scripted duration."""
        return self._progress(handle, WorkState.completed)

    def evaluation_outcome(self, handle: Handle) -> EvaluationOutcome:
        """Predictions made to the script's accuracy."""
        self.hold("evaluation_outcome")
        row = self._row(handle)
        info = orjson.loads(row["info"])
        accuracy = float(self.script()["accuracy"].get(row["candidate"], 1.0))
        if info.get("beir_dir"):
            return EvaluationOutcome(rankings=_rankings(Path(info["beir_dir"]), accuracy))
        lines = [ln for ln in Path(info["eval"]).read_bytes().splitlines() if ln.strip()]
        predictions = []
        good = int(accuracy * len(lines))
        for i, line in enumerate(lines):
            reference = orjson.loads(line)["response"]["choices"][0]["message"]
            response = (
                reference
                if i < good
                else {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"type": "function", "function": {"name": "wrong_tool", "arguments": "{}"}}
                    ],
                }
            )
            predictions.append(
                ItemPrediction(
                    index=i,
                    response=response,
                    latency_ms=10.0 + i,
                    input_tokens=100,
                    output_tokens=20,
                )
            )
        return EvaluationOutcome(predictions=predictions)

    def cancel_evaluation(self, handle: Handle) -> None:
        """Mark cancelled (idempotent)."""
        self._mark(handle, "cancelled_at")

    def delete_evaluation(self, handle: Handle) -> None:
        """Mark deleted."""
        self._mark(handle, "deleted_at")

    def start_customization(
        self, *, job_id: str, candidate: CandidateModel, datasets: Handle, config: JobConfig
    ) -> Handle:
        """Start a scripted fine-tuning job."""
        return self._start("customization", job_id, candidate.name, "customize", {})

    def poll_customization(self, handle: Handle) -> Progress:
        """Completed after the scripted duration."""
        return self._progress(handle, WorkState.completed)

    def cancel_customization(self, handle: Handle) -> None:
        """Mark cancelled (idempotent)."""
        self._mark(handle, "cancelled_at")

    def delete_customization(self, handle: Handle) -> None:
        """Mark deleted."""
        self._mark(handle, "deleted_at")


def _rankings(beir_dir: Path, accuracy: float) -> dict[str, list[str]]:
    qrels: dict[str, list[str]] = {}
    with (beir_dir / "qrels" / "test.tsv").open(newline="") as fh:
        for row in csv.reader(fh, delimiter="\t"):
            if len(row) >= 3 and row[0] != "query-id":
                qrels.setdefault(row[0], []).append(row[1])
    good = int(accuracy * len(qrels))
    return {
        q: ([*docs, "noise-1", "noise-2"]) if i < good else ["noise-1", "noise-2", *docs]
        for i, (q, docs) in enumerate(sorted(qrels.items()))
    }


def from_env(settings: Settings) -> FakePlatform:
    """Factory for ``FLYWHEEL_PLATFORM=tests.workflow.fake_platform:from_env`` (workers).

    Also gates the worker's dataset builds on the script's ``hold["build_datasets"]``.
    """
    platform = FakePlatform(Path(os.environ[ENV_DB]))
    _gate_dataset_builds(platform)
    return platform


def _gate_dataset_builds(platform: FakePlatform) -> None:
    from flywheel.workflow.datasets import LogStoreDatasetBuilder

    build = LogStoreDatasetBuilder.build
    if getattr(build, "_fake_gated", False):
        return

    def gated(self: Any, job: Any, config: JobConfig, out_dir: Path) -> Any:
        platform.hold("build_datasets")
        return build(self, job, config, out_dir)

    gated._fake_gated = True  # type: ignore[attr-defined]
    LogStoreDatasetBuilder.build = gated  # type: ignore[method-assign]
