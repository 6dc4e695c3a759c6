"""MLflow tracking of ended jobs: one parent run per job, nested runs per evaluation and training.

Optional: only when ``MLFLOW_TRACKING_URI`` is set, and only with the ``flywheel[mlflow]``
extra (``mlflow-skinny``, imported here lazily so the package never needs it otherwise).

What is logged, once the job has ended (from the completion task, :mod:`flywheel.workflow.notify`):

* the **job** run: params (ids, job type, configuration essentials), tag ``flywheel.status``,
  run status FINISHED / FAILED / KILLED, artifacts ``results.json`` and ``results.csv``;
* one nested **evaluation** run per candidate and eval type: params candidate and eval type,
  metrics per score (value, ``.ci_low``, ``.ci_high``, ``.n``), latency and runtime;
* one nested **training** run per customization: training and LoRA settings as params, the
  loss curve as step-indexed ``train_loss`` (``val_loss`` per epoch), the output model.

Idempotent: every run is tagged with ``flywheel.job_id``, and the job run is marked
``flywheel.complete`` last. A redelivered task finds the complete run and logs nothing; a
run left half-written by a crash is deleted and logged again.
"""

from __future__ import annotations

import importlib
import json
import re
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from flywheel.domain.jobs import CandidateRun, Job, JobStatus
from flywheel.errors import ConfigError
from flywheel.logging import redact_url
from flywheel.services.jobs import JobDetail
from flywheel.services.promotions import evidence
from flywheel.services.results import result_rows, results_csv

JOB_ID_TAG = "flywheel.job_id"
KIND_TAG = "flywheel.kind"
COMPLETE_TAG = "flywheel.complete"
STATUS_TAG = "flywheel.status"
PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"

_RUN_STATUS = {
    JobStatus.completed: "FINISHED",
    JobStatus.failed: "FAILED",
    JobStatus.cancelled: "KILLED",
}
_INVALID_NAME = re.compile(r"[^\w.\- /:]")
_MAX_PARAM = 500


def _mlflow_tracking() -> Any:
    """``mlflow.tracking``, or a ConfigError that names the extra to install."""
    try:
        return importlib.import_module("mlflow.tracking")
    except ImportError as exc:
        raise ConfigError(
            "MLFLOW_TRACKING_URI is set but mlflow is not installed: install the extra "
            "(pip install 'flywheel[mlflow]') or unset MLFLOW_TRACKING_URI"
        ) from exc


def metric_name(name: str) -> str:
    """``name`` with the characters MLflow refuses (e.g. ``@`` in ``ndcg@10``) replaced by ``_``."""
    return _INVALID_NAME.sub("_", name)


def _param(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text[:_MAX_PARAM]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


class MlflowTracker:
    """Logs ended jobs to one MLflow experiment."""

    def __init__(self, tracking_uri: str, experiment_name: str = "flywheel") -> None:
        """Connect lazily to ``tracking_uri`` (no request until a job is logged).

        Raises:
            ConfigError: mlflow is not installed.
        """
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self._client = _mlflow_tracking().MlflowClient(tracking_uri=tracking_uri)
        self._metric_cls: Any = importlib.import_module("mlflow.entities").Metric

    @property
    def where(self) -> str:
        """The tracking URI without credentials, for messages."""
        return redact_url(self.tracking_uri)

    def experiment_id(self) -> str:
        """The experiment's id, created on first use (a concurrent creation is fine)."""
        found = self._client.get_experiment_by_name(self.experiment_name)
        if found is not None:
            return str(found.experiment_id)
        try:
            return str(self._client.create_experiment(self.experiment_name))
        except Exception:
            found = self._client.get_experiment_by_name(self.experiment_name)
            if found is None:
                raise
            return str(found.experiment_id)

    def runs_of(self, job_id: str) -> list[Any]:
        """Every run (job, evaluation, training) tagged with ``job_id``."""
        return list(
            self._client.search_runs(
                [self.experiment_id()],
                filter_string=f"tags.`{JOB_ID_TAG}` = '{job_id}'",
                max_results=1000,
            )
        )

    def log_job(self, detail: JobDetail) -> str:
        """Log ``detail``'s job once; return the job run's id (the existing one if logged)."""
        job = detail.job
        experiment = self.experiment_id()
        previous = self.runs_of(job.id)
        for run in previous:
            tags = run.data.tags
            if tags.get(KIND_TAG) == "job" and tags.get(COMPLETE_TAG) == "true":
                return str(run.info.run_id)
        for run in previous:  # a half-written attempt: start over
            self._client.delete_run(run.info.run_id)

        parent = self._start(experiment, job, kind="job", name=job.id)
        self._client.log_batch(parent, params=_params(_job_params(job)))
        for run in detail.candidates:
            for evaluation in run.evaluations:
                self._log_evaluation(experiment, job, parent, run, evaluation)
            if run.customization:
                self._log_training(experiment, job, parent, run)
        with tempfile.TemporaryDirectory(prefix="flywheel-mlflow-") as tmp:
            folder = Path(tmp)
            (folder / "results.json").write_text(
                json.dumps(_results_json(detail), indent=2, default=str), encoding="utf-8"
            )
            (folder / "results.csv").write_text(results_csv(detail), encoding="utf-8")
            self._client.log_artifacts(parent, str(folder))
        self._client.set_tag(parent, COMPLETE_TAG, "true")
        self._client.set_terminated(parent, _RUN_STATUS.get(job.status, "FINISHED"))
        return parent

    # -- the runs ------------------------------------------------------------------------
    def _start(
        self, experiment: str, job: Job, *, kind: str, name: str, parent: str | None = None
    ) -> str:
        tags = {
            JOB_ID_TAG: job.id,
            KIND_TAG: kind,
            STATUS_TAG: job.status.value,
            RUN_NAME_TAG: name,
        }
        if parent is not None:
            tags[PARENT_TAG] = parent
        run = self._client.create_run(experiment, tags=tags, run_name=name)
        return str(run.info.run_id)

    def _log_evaluation(
        self,
        experiment: str,
        job: Job,
        parent: str,
        run: CandidateRun,
        evaluation: Mapping[str, Any],
    ) -> None:
        eval_type = str(evaluation.get("eval_type"))
        child = self._start(
            experiment, job, kind="evaluation", name=f"{run.name} / {eval_type}", parent=parent
        )
        self._client.set_tag(child, STATUS_TAG, str(evaluation.get("status")))
        params = {"candidate": run.name, "eval_type": eval_type, "model_type": run.model_type}
        metrics: dict[str, float] = {}
        scores = evaluation.get("scores")
        if isinstance(scores, Mapping):
            for name, score in evidence(scores).items():
                if isinstance(score, Mapping):
                    for field in ("value", "ci_low", "ci_high", "n"):
                        value = _number(score.get(field))
                        if value is not None:
                            suffix = "" if field == "value" else f".{field}"
                            metrics[metric_name(name) + suffix] = value
                elif (value := _number(score)) is not None:
                    metrics[metric_name(name)] = value
        if (runtime := _number(evaluation.get("runtime_seconds"))) is not None:
            metrics["runtime_seconds"] = runtime
        self._client.log_batch(
            child,
            params=_params(params),
            metrics=[self._metric(k, v, 0) for k, v in sorted(metrics.items())],
        )
        self._client.set_terminated(child, _status(evaluation.get("status")))

    def _log_training(self, experiment: str, job: Job, parent: str, run: CandidateRun) -> None:
        custom = run.customization or {}
        details = custom.get("details") or {}
        child = self._start(
            experiment, job, kind="training", name=f"{run.name} / training", parent=parent
        )
        self._client.set_tag(child, STATUS_TAG, str(custom.get("status")))
        config = job.config or {}
        params: dict[str, Any] = {"candidate": run.name, "model_type": run.model_type}
        for section in ("training_config", "lora_config"):
            for key, value in (config.get(section) or {}).items():
                params[f"{section.removesuffix('_config')}.{key}"] = value
        if run.model_type == "embedding":
            for key, value in (config.get("embedding_config") or {}).items():
                params[f"embedding.{key}"] = value
        if details.get("output_model"):
            params["output_model"] = details["output_model"]
        metrics = [self._metric(k, v, s) for k, v, s in _loss_curve(details)]
        if (runtime := _number(custom.get("runtime_seconds"))) is not None:
            metrics.append(self._metric("runtime_seconds", runtime, 0))
        self._client.log_batch(child, params=_params(params), metrics=metrics)
        self._client.set_terminated(child, _status(custom.get("status")))

    def _metric(self, key: str, value: float, step: int) -> Any:
        return self._metric_cls(key=key, value=value, timestamp=int(time.time() * 1000), step=step)


def _params(values: Mapping[str, Any]) -> list[Any]:
    param = importlib.import_module("mlflow.entities").Param
    return [param(metric_name(k), _param(v)) for k, v in sorted(values.items()) if v is not None]


def _status(work_status: Any) -> str:
    return {"completed": "FINISHED", "cancelled": "KILLED"}.get(str(work_status), "FAILED")


def _job_params(job: Job) -> dict[str, Any]:
    """The configuration essentials worth comparing across jobs (never secrets: none are kept)."""
    config = job.config or {}
    split = config.get("data_split_config") or {}
    evaluation = config.get("evaluation_config") or {}
    return {
        "job_id": job.id,
        "client_id": job.client_id,
        "workload_id": job.workload_id,
        "job_type": job.job_type.value,
        "config_name": job.config_name,
        "config_version": job.config_version,
        "config_hash": job.config_hash,
        "candidates": [c.get("name") for c in config.get("candidates") or []],
        "eval_size": split.get("eval_size"),
        "limit": split.get("limit"),
        "split_strategy": split.get("split_strategy"),
        "random_seed": split.get("random_seed"),
        "bootstrap_samples": evaluation.get("bootstrap_samples"),
        "confidence_level": evaluation.get("confidence_level"),
        **{
            f"dataset.{key}": value
            for key, value in (job.dataset_stats or {}).items()
            if isinstance(value, str | int | float)
        },
    }


def _loss_curve(details: Mapping[str, Any]) -> Iterable[tuple[str, float, int]]:
    """``(name, value, step)``: the whole curve when the platform reported it, else the last point.

    ``train_loss`` is indexed by optimizer step, ``val_loss`` by epoch (the local trainer's
    manifest and NMP's ``train_loss``/``val_loss`` history lists both have that shape).
    """
    nested = details.get("metrics")
    history: Mapping[str, Any] = nested if isinstance(nested, Mapping) else details
    train, val = history.get("train_loss"), history.get("val_loss")
    if not isinstance(train, list):
        train = _manifest_losses(details.get("output_model"), "train_loss")
    if not isinstance(val, list):
        val = _manifest_losses(details.get("output_model"), "val_loss")
    if train:
        for step, value in enumerate(train, start=1):
            if (number := _number(value)) is not None:
                yield "train_loss", number, step
    elif (loss := _number(details.get("loss"))) is not None:
        yield "train_loss", loss, int(_number(details.get("step")) or 0)
    if val:
        for epoch, value in enumerate(val, start=1):
            if (number := _number(value)) is not None:
                yield "val_loss", number, epoch
    elif (loss := _number(details.get("val_loss"))) is not None:
        yield "val_loss", loss, int(_number(details.get("epoch")) or 0)


def _manifest_losses(output_model: Any, name: str) -> list[Any] | None:
    """The curve from a local adapter's ``manifest.json`` (the local platform's output)."""
    if not isinstance(output_model, str) or "://" in output_model:
        return None
    manifest = Path(output_model) / "manifest.json"
    try:
        metrics = json.loads(manifest.read_text(encoding="utf-8")).get("metrics") or {}
    except (OSError, ValueError, AttributeError):
        return None
    values = metrics.get(name)
    return values if isinstance(values, list) else None


def _results_json(detail: JobDetail) -> dict[str, Any]:
    job = detail.job
    return {
        "job": {
            "id": job.id,
            "client_id": job.client_id,
            "workload_id": job.workload_id,
            "job_type": job.job_type.value,
            "status": job.status.value,
            "error": job.error,
            "created_at": job.created_at,
            "finished_at": job.finished_at,
            "dataset_stats": job.dataset_stats,
        },
        "recommendation": job.recommendation,
        "results": list(result_rows(detail)),
    }
