"""The model-platform port: datasets, deployments, evaluation and customization.

The workflow never waits inside a task, so every long operation is split into a *start*
call that returns a handle and a *poll* call that reports where it stands. Handles are
small JSON-able dicts that the workflow writes to the state store **before** it waits on
them, so cancellation and cleanup can always find the platform work (blueprint D20).
Every stop/delete call is idempotent: stopping something already stopped or gone succeeds.

Every *start* call should be idempotent on its natural key — ``(job_id, candidate.name)``
for datasets, deployments and customizations, ``(job_id, candidate.name, eval_type)`` for
evaluations — while that work is not cancelled: a repeated start returns the handle of the
work already started (e.g. by deriving run-unique platform names from the key and looking
them up first). A worker killed between a start call and the write of its handle redoes
the start, so this is what keeps "at least once" steps from starting GPU work twice.

Adapters raise :class:`~flywheel.errors.PlatformUnavailable` for transient failures
(timeouts, 5xx, connection refused: the workflow retries with backoff) and
:class:`~flywheel.errors.PlatformError` for permanent ones, with a message naming the
service, the endpoint and the platform's own words.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, Protocol

from flywheel.config.schema import CandidateModel, JobConfig

Handle = dict[str, Any]
"""Opaque, JSON-serialisable reference to platform work (ids, names, process ids)."""


class WorkState(StrEnum):
    """Where a piece of platform work stands (one vocabulary for every kind of work)."""

    pending = "pending"
    running = "running"
    ready = "ready"  # a deployment that serves requests
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def terminal(self) -> bool:
        """True when polling again cannot change the state."""
        return self in {WorkState.ready, WorkState.completed, WorkState.failed, WorkState.cancelled}


EvalType = Literal["base", "icl", "customized"]


@dataclass(frozen=True)
class DatasetFiles:
    """Local dataset files produced by the dataset pipeline, by role."""

    root: Path
    eval: Path | None = None
    icl_eval: dict[str, Path] = field(default_factory=dict)  # candidate name → ICL eval file
    train: Path | None = None
    validation: Path | None = None
    beir_dir: Path | None = None  # embedding jobs: corpus.jsonl, queries.jsonl, qrels/test.tsv


@dataclass(frozen=True)
class Progress:
    """A poll result for any platform work."""

    state: WorkState
    percent: float | None = None
    message: str | None = None
    details: dict[str, Any] = field(default_factory=dict)  # epoch, step, loss, val_loss, ...


@dataclass(frozen=True)
class ItemPrediction:
    """One eval item as the candidate answered it (LLM jobs).

    ``response`` is an OpenAI-style assistant message (content and/or tool_calls) so the
    domain metrics score every platform's output the same way.
    """

    index: int
    response: dict[str, Any] | None
    latency_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    error: str | None = None
    judge_reply: str | None = None


@dataclass(frozen=True)
class EvaluationOutcome:
    """What a completed evaluation produced.

    ``platform_scores`` are the scores the platform itself reported (e.g. NMP Evaluator);
    ``predictions`` are per-item answers when the platform can give them, so our own metric
    code can recompute (and cross-check) the scores. Embedding jobs fill ``rankings``
    (query id → ranked doc ids) instead of ``predictions``.
    """

    platform_scores: dict[str, float] = field(default_factory=dict)
    predictions: list[ItemPrediction] = field(default_factory=list)
    rankings: dict[str, list[str]] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)


class ModelPlatform(Protocol):
    """Where candidates are deployed, evaluated and customized."""

    name: str

    def upload_datasets(self, *, job_id: str, files: DatasetFiles) -> Handle:
        """Make the job's datasets available to the platform; return their references."""
        ...

    def delete_datasets(self, handle: Handle) -> None:
        """Remove uploaded datasets (idempotent)."""
        ...

    def start_deployment(self, *, job_id: str, candidate: CandidateModel) -> Handle:
        """Start serving a candidate (or reuse one already served that the job does not own)."""
        ...

    def poll_deployment(self, handle: Handle) -> Progress:
        """Report a deployment: ``ready`` when it serves requests."""
        ...

    def shutdown_deployment(self, handle: Handle) -> None:
        """Stop a deployment the job started; never one it merely reused (idempotent)."""
        ...

    def is_model_served(self, model_name: str) -> bool:
        """True when the platform already serves ``model_name`` (e.g. a shared LLM judge).

        The workflow then uses that model as it is and never shuts it down; a model that is
        not served is deployed for the job (``start_deployment``) and shut down at its end.
        """
        ...

    def peak_gpus(self, candidate: CandidateModel) -> int:
        """GPUs the candidate's run holds at once at its peak on this platform.

        Usually ``candidate.gpus`` (its deployment). A platform that deploys more for one of
        the candidate's evaluations (NMP serves a full-weight customized embedder beside the
        base NIM) says so here, and the workflow leases that much before starting.
        """
        ...

    def release_job(self, job_id: str) -> list[str]:
        """Stop whatever still runs for ``job_id``; describe each thing stopped (idempotent).

        Called once an ended job has stopped everything it recorded. Anything still live is
        work whose start reached the platform but whose answer never reached us (a timeout
        after the platform acted, past the retry budget), so no handle was recorded for it;
        each platform finds it by how it tagged the work (owner field, the job's work dir).
        """
        ...

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
        """Start evaluating a candidate variant on the job's eval set (ICL set for ``icl``)."""
        ...

    def poll_evaluation(self, handle: Handle) -> Progress:
        """Report an evaluation."""
        ...

    def evaluation_outcome(self, handle: Handle) -> EvaluationOutcome:
        """The results of a ``completed`` evaluation."""
        ...

    def cancel_evaluation(self, handle: Handle) -> None:
        """Stop an evaluation (idempotent; already terminal is success)."""
        ...

    def delete_evaluation(self, handle: Handle) -> None:
        """Remove an evaluation and its results from the platform (idempotent)."""
        ...

    def start_customization(
        self, *, job_id: str, candidate: CandidateModel, datasets: Handle, config: JobConfig
    ) -> Handle:
        """Start fine-tuning a candidate on the job's train/validation sets."""
        ...

    def poll_customization(self, handle: Handle) -> Progress:
        """Report a customization; ``details`` carries epoch, step, loss and ``output_model``."""
        ...

    def cancel_customization(self, handle: Handle) -> None:
        """Stop a customization (idempotent)."""
        ...

    def delete_customization(self, handle: Handle) -> None:
        """Remove the customized model/adapter (idempotent)."""
        ...
