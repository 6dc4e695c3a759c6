"""Shared, thread-safe state of the fake NMP: entities, lifecycles, faults and the ledger.

One :class:`FakeNMP` backs the three apps (N, D, P). Tests hold it to inject faults and to
assert on the ledger. Long-running work (deployments, customization and evaluation jobs)
advances by *observation*: each GET of the item (or its ``/status``) moves it one step along
its schedule, so tests are deterministic and need no sleeps. ``FakeNMP(advance="time")``
instead advances one step per ``step_seconds`` of wall time.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def new_id(prefix: str) -> str:
    """A semantically-prefixed base58-encoded uuid4 (nmp-api.md §2.3)."""
    number = uuid.uuid4().int
    digits = []
    while number:
        number, rest = divmod(number, 58)
        digits.append(_B58[rest])
    return f"{prefix}-{''.join(reversed(digits))}"


def now() -> str:
    """ISO-8601 without timezone, as NMP writes timestamps."""
    return datetime.now(UTC).replace(tzinfo=None).isoformat()


Action = Literal["created", "updated", "cancelled", "deleted"]


@dataclass(frozen=True)
class LedgerEntry:
    """One state-changing request the fake accepted."""

    action: Action
    kind: str
    key: str
    method: str
    path: str


@dataclass
class Fault:
    """A response the fake gives instead of the real one, ``times`` times (None: always)."""

    host: str
    method: str
    path: re.Pattern[str]
    status: int = 503
    body: Any = None
    times: int | None = 1
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    hits: int = 0
    perform: bool = False  # serve the request, then answer the fault (a lost create answer)


@dataclass
class Work:
    """A deployment or job whose status advances along a schedule."""

    kind: str
    record: dict[str, Any]
    schedule: list[str]
    step: int = 0
    created_monotonic: float = field(default_factory=time.monotonic)
    fail_message: str | None = None
    fail_at_percent: float | None = None


CUSTOMIZATION_PERCENTS = (0.0, 25.0, 50.0, 75.0, 100.0)


class FakeNMP:
    """State of a fake NMP installation shared by its N, D and P apps."""

    def __init__(
        self,
        *,
        advance: Literal["polls", "time"] = "polls",
        step_seconds: float = 0.2,
        base_models: tuple[str, ...] = (),
    ) -> None:
        self.lock = threading.RLock()
        self.advance = advance
        self.step_seconds = step_seconds
        self.ledger: list[LedgerEntry] = []
        self.requests: list[tuple[str, str, str]] = []  # (host, method, path)
        self.bodies: list[tuple[str, str, Any]] = []  # (method, path, parsed body) of writes
        self.faults: list[Fault] = []
        self.authorizations: set[str] = set()  # Authorization headers received (any host)
        # Work kind ("deployment", "customization", "evaluation") → the phase its work stays
        # in until :meth:`release` (a cancel still moves it on).
        self.holds: dict[str, str] = {}
        # Entity tables keyed by "namespace/name" (or id for namespaces and jobs).
        self.namespaces: dict[str, dict[str, Any]] = {}
        self.ds_namespaces: dict[str, dict[str, Any]] = {}
        self.datasets: dict[str, dict[str, Any]] = {}
        self.models: dict[str, dict[str, Any]] = {}
        self.repos: dict[str, dict[str, bytes]] = {}  # "ns/name" → path → content
        self.deployments: dict[str, Work] = {}
        self.customization_configs: dict[str, dict[str, Any]] = {}
        self.customization_jobs: dict[str, Work] = {}
        self.evaluation_configs: dict[str, dict[str, Any]] = {}
        self.evaluation_targets: dict[str, dict[str, Any]] = {}
        self.evaluation_jobs: dict[str, Work] = {}
        self.served: dict[str, int] = {m: int(time.time()) for m in base_models}
        # Failure injection for the next created work of each kind.
        self.next_deployment_failure: str | None = None
        self.next_customization_failure: tuple[float, str] | None = None
        self.next_evaluation_failure: str | None = None
        self.dms_duplicate_as_500 = False
        # Scores the Evaluator reports (by score name); anything else gets ``default_score``.
        self.scores: dict[str, float] = {
            "function_name_accuracy": 0.8,
            "function_name_and_args_accuracy": 0.6,
            "similarity": 7.0,
            "rating": 1.0,
        }
        self.default_score = 0.5
        # Per-item results in ``download-results`` archives (§8.5): the candidate's answer to
        # each eval row (default: the reference answer, so our recomputed accuracy is 1.0
        # while the Evaluator's aggregate says otherwise) and the retriever's ranking of each
        # query (default: relevant documents first). ``archive_override`` replaces every
        # archive's bytes (a malformed or foreign layout).
        self.answer: Callable[[int, dict[str, Any]], dict[str, Any]] | None = None
        self.rank: Callable[[str, list[str], set[str]], list[str]] | None = None
        self.archive_override: bytes | None = None

    # -- failure injection ---------------------------------------------------------------

    def inject(
        self,
        *,
        host: str,
        method: str,
        path: str,
        status: int = 503,
        body: Any = None,
        times: int | None = 1,
        delay_s: float = 0.0,
        headers: dict[str, str] | None = None,
        perform: bool = False,
    ) -> Fault:
        """Answer matching requests with ``status`` (a regex ``path``); ``delay_s`` slows them.

        ``status=0`` with a delay only slows the request, then serves it normally.
        ``perform=True`` serves the request first (a create happens) and then answers with
        ``status`` instead: a create NMP performed but whose answer was lost to a 5xx.
        """
        fault = Fault(
            host=host,
            method=method.upper(),
            path=re.compile(path),
            status=status,
            body=body if body is not None else {"detail": f"injected failure {status}"},
            times=times,
            delay_s=delay_s,
            headers=headers or {},
            perform=perform,
        )
        with self.lock:
            self.faults.append(fault)
        return fault

    def fail_next_deployment(self, message: str) -> None:
        """The next model deployment created ends ``failed`` with ``message``."""
        with self.lock:
            self.next_deployment_failure = message

    def fail_next_customization(self, *, at_percent: float = 40.0, detail: str) -> None:
        """The next customization job fails once training passes ``at_percent``."""
        with self.lock:
            self.next_customization_failure = (at_percent, detail)

    def fail_next_evaluation(self, message: str) -> None:
        """The next evaluation job ends ``failed`` with ``message``."""
        with self.lock:
            self.next_evaluation_failure = message

    def hold(self, kind: str, phase: str) -> None:
        """Keep every ``kind`` work item at ``phase`` (e.g. ``running:50.0``) once it gets there."""
        with self.lock:
            self.holds[kind] = phase

    def release(self, kind: str) -> None:
        """Let held ``kind`` work advance again."""
        with self.lock:
            self.holds.pop(kind, None)

    def take_fault(self, host: str, method: str, path: str) -> Fault | None:
        """The first live fault matching the request, consumed once."""
        with self.lock:
            for fault in self.faults:
                if fault.times is not None and fault.hits >= fault.times:
                    continue
                if fault.host == host and fault.method == method and fault.path.search(path):
                    fault.hits += 1
                    return fault
        return None

    # -- bookkeeping ---------------------------------------------------------------------

    def record(self, action: Action, kind: str, key: str, method: str, path: str) -> None:
        """Append a ledger entry."""
        with self.lock:
            self.ledger.append(LedgerEntry(action, kind, key, method, path))

    def entries(self, action: str | None = None, kind: str | None = None) -> list[LedgerEntry]:
        """Ledger entries, optionally filtered by action and kind."""
        with self.lock:
            return [
                e
                for e in self.ledger
                if (action is None or e.action == action) and (kind is None or e.kind == kind)
            ]

    def requested(self, method: str, path: str) -> bool:
        """Whether any host received ``method path`` exactly."""
        with self.lock:
            return any(m == method and p == path for _, m, p in self.requests)

    # -- lifecycles ----------------------------------------------------------------------

    def observe(self, work: Work) -> None:
        """Advance ``work`` one step (poll mode) or to where wall time says (time mode)."""
        with self.lock:
            if self.advance == "time":
                elapsed = time.monotonic() - work.created_monotonic
                target = int(elapsed / self.step_seconds)
            else:
                target = work.step + 1
            while work.step < min(target, len(work.schedule) - 1):
                if self.holds.get(work.kind) == work.schedule[work.step]:
                    return
                work.step += 1
                self._enter(work)

    def _enter(self, work: Work) -> None:
        phase = work.schedule[work.step]
        if work.kind == "deployment":
            self._enter_deployment(work, phase)
        elif work.kind == "customization":
            self._enter_customization(work, phase)
        else:
            self._enter_evaluation(work, phase)

    def _enter_deployment(self, work: Work, phase: str) -> None:
        rec = work.record
        rec["updated_at"] = now()
        if phase == "failed":
            rec["status_details"] = {"status": "failed", "description": work.fail_message}
            return
        rec["status_details"] = {"status": phase, "description": f"deployment is {phase}"}
        if phase == "ready":
            rec["deployed"] = True
            config = rec["config"]
            model = config.get("model") if isinstance(config, dict) else None
            self.served[str(model or rec["name"])] = int(time.time())

    def _enter_customization(self, work: Work, phase: str) -> None:
        rec = work.record
        details = rec["status_details"]
        details["updated_at"] = rec["updated_at"] = now()
        if phase.startswith("running:"):
            percent = float(phase.split(":", 1)[1])
            if work.fail_at_percent is not None and percent >= work.fail_at_percent:
                percent = work.fail_at_percent
                rec["status"] = details["status"] = "failed"
                details["percentage_done"] = percent
                details["status_logs"].append(
                    {"updated_at": now(), "message": "failed", "detail": work.fail_message}
                )
                work.schedule = work.schedule[: work.step + 1]
                return
            epochs = int(rec["hyperparameters"].get("epochs") or 1)
            rec["status"] = details["status"] = "running"
            details["percentage_done"] = percent
            details["epochs_completed"] = int(epochs * percent / 100)
            details["steps_completed"] = int(percent)  # one step per percent, for the fake
            details["steps_per_epoch"] = max(1, 100 // epochs)
            if percent > 0:
                loss = round(2.0 - percent / 100, 4)
                details["train_loss"] = loss
                details["val_loss"] = round(loss + 0.1, 4)
                metrics = details.setdefault(
                    "metrics", {"keys": ["train_loss", "val_loss"], "metrics": {}}
                )
                for key, value in (("train_loss", loss), ("val_loss", loss + 0.1)):
                    metrics["metrics"].setdefault(key, []).append(
                        {"step": int(percent), "value": value, "timestamp": now()}
                    )
            details["status_logs"].append({"updated_at": now(), "message": "Running"})
            return
        rec["status"] = details["status"] = phase
        details["status_logs"].append({"updated_at": now(), "message": phase})
        if phase == "pending":
            details["status_logs"][-1]["detail"] = "The training job is pending"
        if phase == "completed":
            model = self.models.get(str(rec["output_model"]))
            if model is not None:
                model["artifact"]["status"] = "upload_completed"
            if rec["hyperparameters"].get("finetuning_type") == "lora":
                self.served[str(rec["output_model"])] = int(time.time())

    def _enter_evaluation(self, work: Work, phase: str) -> None:
        rec = work.record
        rec["updated_at"] = now()
        details = rec["status_details"]
        if phase == "failed":
            rec["status"] = "failed"
            details["message"] = work.fail_message
            return
        if phase.startswith("running:"):
            rec["status"] = "running"
            details["progress"] = float(phase.split(":", 1)[1])
            details["task_status"] = dict.fromkeys(rec["config"].get("tasks") or {}, "running")
            return
        rec["status"] = phase
        if phase == "completed":
            details["progress"] = 100.0
            details["task_status"] = dict.fromkeys(rec["config"].get("tasks") or {}, "completed")
            rec["results"] = self._results(rec)

    def _score(self, name: str) -> float:
        return self.scores.get(name, self.default_score)

    def _results(self, job: dict[str, Any]) -> dict[str, Any]:
        config = job["config"]
        retriever = config.get("type") == "retriever"
        tasks: dict[str, Any] = {}
        for task_name, task in (config.get("tasks") or {}).items():
            metrics: dict[str, Any] = {}
            for metric_name, metric in (task.get("metrics") or {}).items():
                mtype = metric.get("type", metric_name)
                if retriever:
                    score = {mtype: {"value": self._score(mtype), "stats": {}}}
                    metrics[f"retriever.{metric_name}"] = {"scores": score}
                    continue
                if mtype == "tool-calling":
                    names = ["function_name_accuracy", "function_name_and_args_accuracy"]
                elif mtype == "llm-judge":
                    names = list((metric.get("params") or {}).get("scores") or {"score": {}})
                else:
                    names = [mtype]
                metrics[metric_name] = {
                    "scores": {
                        n: {"value": self._score(n), "stats": {"count": 10, "mean": self._score(n)}}
                        for n in names
                    }
                }
            tasks[task_name] = {"metrics": metrics}
        return {
            "job": job["id"],
            "id": new_id("evaluation_result"),
            "namespace": job.get("namespace") or "default",
            "files_url": f"hf://datasets/evaluation-results/{job['id']}",
            "created_at": now(),
            "updated_at": now(),
            "custom_fields": {},
            "groups": {},
            "tasks": tasks,
        }

    # -- creators used by the N app ------------------------------------------------------

    def new_deployment(self, record: dict[str, Any]) -> Work:
        with self.lock:
            failure, self.next_deployment_failure = self.next_deployment_failure, None
            schedule = ["created", "pending", "failed" if failure else "ready"]
            work = Work("deployment", record, schedule, fail_message=failure)
            record["status_details"] = {"status": "created", "description": "created"}
            return work

    def new_customization(self, record: dict[str, Any]) -> Work:
        with self.lock:
            failure, self.next_customization_failure = self.next_customization_failure, None
            schedule = ["created", "pending"]
            schedule += [f"running:{p}" for p in CUSTOMIZATION_PERCENTS]
            schedule.append("completed")
            work = Work("customization", record, schedule)
            if failure is not None:
                work.fail_at_percent, work.fail_message = failure
            return work

    def new_evaluation(self, record: dict[str, Any]) -> Work:
        with self.lock:
            failure, self.next_evaluation_failure = self.next_evaluation_failure, None
            schedule = ["created", "running:0.0", "running:50.0"]
            schedule.append("failed" if failure else "completed")
            return Work("evaluation", record, schedule, fail_message=failure)

    def cancel(self, work: Work) -> None:
        """Move ``work`` to ``cancelling``; its next observation reaches ``cancelled``."""
        with self.lock:
            work.schedule = [*work.schedule[: work.step + 1], "cancelling", "cancelled"]
            work.fail_at_percent = None
            work.step += 1
            self._enter(work)
