"""The local model platform: in-process Hugging Face models or OpenAI-compatible endpoints.

* **Datasets** stay where the dataset pipeline wrote them; the handle records their paths.
* **Deployments** are *load on demand*: nothing is served between evaluations. A deployment
  handle is returned at once, and polling it checks that the model source exists (the
  package is installed and holds the file, the directory exists, or the endpoint answers
  ``/v1/models``): ``ready`` when it does, ``failed`` with the reason when it does not.
  Evaluations load the model into their own worker process.
* **Evaluations and customizations** run in worker processes
  (:mod:`flywheel.platforms.local.runner`), one directory each under
  ``DATA_DIR/jobs/<job_id>/<work>/``. Start is idempotent: starting the same work again
  while it is pending, running or completed returns the same handle. At most
  ``max_concurrent_trainings`` customizations run at once; the others stay ``pending`` and
  are launched by a later poll when a slot frees.
* **Cancellation** writes a flag the worker checks between steps; a worker that has not
  stopped ``cancel_grace_s`` later is killed by the next poll.
* Adapters are saved under ``DATA_DIR/adapters/<job_id>/<candidate>/`` with a manifest.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Any

from flywheel.config.schema import CandidateModel, JobConfig
from flywheel.errors import ConfigError, PlatformError
from flywheel.platforms.base import (
    DatasetFiles,
    EvalType,
    EvaluationOutcome,
    Handle,
    ItemPrediction,
    ModelPlatform,
    Progress,
    WorkState,
)
from flywheel.platforms.local.jobfiles import WorkDir, read_json, write_json_atomic
from flywheel.platforms.local.models import candidate_source, judge_source
from flywheel.platforms.local.processes import WorkerPool

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_RESTARTABLE = {WorkState.failed.value, WorkState.cancelled.value}


def _safe(name: str) -> str:
    return _UNSAFE.sub("_", name).strip("._") or "x"


class LocalPlatform:
    """The :class:`~flywheel.platforms.base.ModelPlatform` that runs on this machine."""

    name = "local"

    def __init__(
        self,
        data_dir: Path,
        *,
        torch_threads: int = 0,
        training_threads: int = 0,
        max_concurrent_trainings: int = 1,
        cancel_grace_s: float = 10.0,
        eval_batch_size: int = 8,
    ) -> None:
        self.data_dir = data_dir
        self.torch_threads = torch_threads
        # Training is usually the critical path: it may get more threads than evaluations
        # (0: the same as torch_threads).
        self.training_threads = training_threads or torch_threads
        self.max_concurrent_trainings = max_concurrent_trainings
        self.cancel_grace_s = cancel_grace_s
        self.eval_batch_size = eval_batch_size
        self.pool = WorkerPool(slots_dir=data_dir / "jobs" / ".training-slots")

    # datasets ---------------------------------------------------------------------------

    def upload_datasets(self, *, job_id: str, files: DatasetFiles) -> Handle:
        """Record where the dataset files are (they are already local)."""
        handle: Handle = {"kind": "datasets", "job_id": job_id, "root": str(files.root)}
        for role in ("eval", "train", "validation", "beir_dir"):
            value = getattr(files, role)
            handle[role] = str(value) if value is not None else None
        handle["icl_eval"] = {name: str(path) for name, path in files.icl_eval.items()}
        return handle

    def delete_datasets(self, handle: Handle) -> None:
        """Nothing to do: the pipeline's files belong to the pipeline."""

    # deployments ------------------------------------------------------------------------

    def start_deployment(self, *, job_id: str, candidate: CandidateModel) -> Handle:
        """Return a load-on-demand handle; polling validates the model source."""
        return {
            "kind": "deployment",
            "job_id": job_id,
            "candidate": candidate.model_dump(mode="json"),
        }

    def poll_deployment(self, handle: Handle) -> Progress:
        """``ready`` when the model source exists (raises PlatformUnavailable if unreachable)."""
        candidate = CandidateModel.model_validate(handle["candidate"])
        try:
            source = candidate_source(candidate)
        except ConfigError as exc:
            return Progress(WorkState.failed, message=str(exc))
        if source.kind == "endpoint":
            from flywheel.platforms.local.endpoint import list_models

            served = list_models(source)
            if served and source.endpoint_model not in served:
                return Progress(
                    WorkState.failed,
                    message=f"endpoint {source.endpoint_url} does not serve "
                    f"{source.endpoint_model!r} (it serves {served[:10]})",
                )
            return Progress(WorkState.ready, message=f"served by {source.endpoint_url}")
        where = "local files" if source.is_local_dir else "the Hugging Face hub cache"
        return Progress(
            WorkState.ready, message=f"loaded on demand from {where}", details=source.to_dict()
        )

    def shutdown_deployment(self, handle: Handle) -> None:
        """Nothing to stop: local models live only inside their evaluation's worker."""

    def is_model_served(self, model_name: str) -> bool:
        """Never: nothing is served between evaluations (models load on demand)."""
        return False

    def peak_gpus(self, candidate: CandidateModel) -> int:
        """The candidate's own ``gpus``: every variant runs in one worker at a time."""
        return candidate.gpus

    def release_job(self, job_id: str) -> list[str]:
        """Ask every live work dir of ``job_id`` to stop (the worker exits at its next step).

        Work dirs are named by job and work, so a start whose answer was lost left its work
        where a repeated start finds and adopts it; what is still live once the job has ended
        is such work, and is cancelled like any other.
        """
        root = self.data_dir / "jobs" / _safe(job_id)
        stopped: list[str] = []
        for path in sorted(root.iterdir()) if root.is_dir() else []:
            progress = read_json(WorkDir(path).progress)
            if progress is None or WorkState(progress["state"]).terminal:
                continue
            self._cancel({"work_dir": str(path)})
            stopped.append(f"local work {path.name}")
        return stopped

    # shared work plumbing ----------------------------------------------------------------

    def _work(self, handle: Handle) -> WorkDir:
        return WorkDir(Path(handle["work_dir"]))

    def _prepare(self, *, job_id: str, work_name: str, spec: dict[str, Any]) -> WorkDir | None:
        """The work dir with its spec written; ``None`` when live or finished work exists."""
        work = WorkDir(self.data_dir / "jobs" / _safe(job_id) / work_name)
        existing = read_json(work.progress)
        if existing is not None and existing.get("state") not in _RESTARTABLE:
            return None
        if work.path.exists():
            self.pool.kill(work)
            shutil.rmtree(work.path)
        work.path.mkdir(parents=True)
        write_json_atomic(work.spec, spec)
        work.report(WorkState.pending.value, message="queued")
        return work

    def _env(self, threads_wanted: int) -> dict[str, str]:
        threads = str(threads_wanted) if threads_wanted > 0 else ""
        env = {"TOKENIZERS_PARALLELISM": "false"}
        if threads:
            env |= {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        return env

    def _poll(self, handle: Handle) -> Progress:
        work = self._work(handle)
        progress = read_json(work.progress)
        if progress is None:
            return Progress(WorkState.failed, message=f"work directory {work.path} is gone")
        state = WorkState(progress["state"])
        launched = self.pool.pid(work) is not None
        if not launched and state is WorkState.pending:
            if work.cancel_requested():
                work.report(WorkState.cancelled.value, message="cancelled before it started")
                return Progress(WorkState.cancelled, message="cancelled before it started")
            if not handle.get("training") or self.pool.take_slot(
                work, limit=self.max_concurrent_trainings, env=self._env(self.training_threads)
            ):
                return Progress(WorkState.running, percent=0.0, message="worker started")
            return Progress(WorkState.pending, message="waiting for a training slot")
        alive = self.pool.alive(work)
        if state.terminal:
            if alive:  # the worker is writing its last words; let it finish
                self.pool.wait(work, 5.0)
            return self._progress(progress)
        if not alive and launched:
            reason = work.log_tail(1500) or "no output"
            message = f"worker process exited without a result: {reason}"
            work.report(WorkState.failed.value, message=message)
            return Progress(WorkState.failed, message=message)
        if work.cancel_requested():
            asked = work.cancel_flag.stat().st_mtime
            if time.time() - asked > self.cancel_grace_s:
                self.pool.kill(work)
                work.report(WorkState.cancelled.value, message="killed after the cancel grace")
                return Progress(WorkState.cancelled, message="killed after the cancel grace")
        return self._progress(progress)

    @staticmethod
    def _progress(progress: dict[str, Any]) -> Progress:
        return Progress(
            state=WorkState(progress["state"]),
            percent=progress.get("percent"),
            message=progress.get("message"),
            details=progress.get("details") or {},
        )

    def _cancel(self, handle: Handle) -> None:
        work = self._work(handle)
        progress = read_json(work.progress)
        if progress is None or WorkState(progress["state"]).terminal:
            return
        if not work.cancel_flag.exists():
            work.cancel_flag.write_text(str(time.time()))
        if self.pool.pid(work) is None:
            work.report(WorkState.cancelled.value, message="cancelled before it started")

    def _delete(self, handle: Handle, *extra: Path) -> None:
        work = self._work(handle)
        if work.path.exists():
            self._cancel(handle)
            self.pool.kill(work)
            shutil.rmtree(work.path, ignore_errors=True)
        for path in extra:
            shutil.rmtree(path, ignore_errors=True)

    # evaluations ------------------------------------------------------------------------

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
        """Start a worker that answers the eval set (and judges, when configured)."""
        if candidate.model_type == "embedding":
            from flywheel.platforms.local.ranking import embedding_evaluation_spec

            spec = embedding_evaluation_spec(
                candidate=candidate, datasets=datasets, config=config, customization=customization
            )
        else:
            spec = self._llm_evaluation_spec(
                candidate=candidate,
                eval_type=eval_type,
                datasets=datasets,
                config=config,
                customization=customization,
            )
        spec["torch_threads"] = self.torch_threads
        name = f"eval-{_safe(candidate.name)}-{eval_type}"
        work = self._prepare(job_id=job_id, work_name=name, spec=spec)
        path = self.data_dir / "jobs" / _safe(job_id) / name
        if work is not None:
            self.pool.launch(work, env=self._env(self.torch_threads))
        return {"kind": "evaluation", "job_id": job_id, "work_dir": str(path)}

    def _llm_evaluation_spec(
        self,
        *,
        candidate: CandidateModel,
        eval_type: EvalType,
        datasets: Handle,
        config: JobConfig,
        customization: Handle | None,
    ) -> dict[str, Any]:
        if eval_type == "icl":
            eval_file = (datasets.get("icl_eval") or {}).get(candidate.name)
        else:
            eval_file = datasets.get("eval")
        if not eval_file:
            raise PlatformError(f"local platform: no {eval_type} eval file for {candidate.name!r}")
        source = candidate_source(candidate)
        adapter_dir = None
        if eval_type == "customized":
            if customization is None:
                raise PlatformError("local platform: a customized evaluation needs its adapter")
            if source.kind == "endpoint":
                raise PlatformError(f"local platform: cannot attach an adapter to {source.name!r}")
            adapter_dir = customization["output_model"]
        judge = judge_source(config.llm_judge_config)
        return {
            "kind": "evaluation",
            "candidate": source.to_dict(),
            "eval_file": eval_file,
            "adapter_dir": adapter_dir,
            "judge": judge.to_dict() if judge else None,
            "max_new_tokens": config.evaluation_config.max_new_tokens,
            "max_concurrency": config.evaluation_config.max_concurrency,
            "batch_size": self.eval_batch_size,
        }

    def poll_evaluation(self, handle: Handle) -> Progress:
        """Where the evaluation worker stands."""
        return self._poll(handle)

    def evaluation_outcome(self, handle: Handle) -> EvaluationOutcome:
        """Predictions and scores of a completed evaluation."""
        result = read_json(self._work(handle).result)
        if result is None:
            raise PlatformError(f"local platform: evaluation {handle['work_dir']} has no result")
        return EvaluationOutcome(
            platform_scores=dict(result.get("platform_scores") or {}),
            predictions=[ItemPrediction(**p) for p in result.get("predictions") or []],
            rankings=dict(result.get("rankings") or {}),
            artifacts=dict(result.get("artifacts") or {}),
        )

    def cancel_evaluation(self, handle: Handle) -> None:
        """Ask the worker to stop (killed by a later poll if it does not)."""
        self._cancel(handle)

    def delete_evaluation(self, handle: Handle) -> None:
        """Stop the worker and remove the evaluation's files."""
        self._delete(handle)

    # customizations ---------------------------------------------------------------------

    def start_customization(
        self, *, job_id: str, candidate: CandidateModel, datasets: Handle, config: JobConfig
    ) -> Handle:
        """Queue a training worker; it starts now if a training slot is free."""
        source = candidate_source(candidate)
        if source.kind == "endpoint":
            raise PlatformError(
                f"local platform: {candidate.name!r} is served by the endpoint "
                f"{source.endpoint_url} and cannot be fine-tuned here (its weights are not on "
                "this machine); set customization_enabled: false for it"
            )
        output = self.data_dir / "adapters" / _safe(job_id) / _safe(candidate.name)
        if candidate.model_type == "embedding":
            from flywheel.platforms.local.embeddings import embedding_customization_spec

            spec = embedding_customization_spec(
                source=source, datasets=datasets, config=config, output_dir=output
            )
        else:
            if not datasets.get("train"):
                raise PlatformError("local platform: the job has no train file")
            spec = {
                "kind": "customization",
                "base": source.to_dict(),
                "train_file": datasets["train"],
                "validation_file": datasets.get("validation"),
                "output_dir": str(output),
                "training": config.training_config.model_dump(mode="json"),
                "lora": config.lora_config.model_dump(mode="json"),
                "max_seq_length": min(
                    config.training_config.max_seq_length, candidate.customization.max_seq_length
                ),
                "seed": config.data_split_config.random_seed or 42,
            }
        spec["torch_threads"] = self.training_threads
        name = f"customize-{_safe(candidate.name)}"
        handle: Handle = {
            "kind": "customization",
            "job_id": job_id,
            "work_dir": str(self.data_dir / "jobs" / _safe(job_id) / name),
            "output_model": str(output),
            "training": True,
        }
        work = self._prepare(job_id=job_id, work_name=name, spec=spec)
        if work is not None:
            self.pool.take_slot(
                work, limit=self.max_concurrent_trainings, env=self._env(self.training_threads)
            )
        return handle

    def poll_customization(self, handle: Handle) -> Progress:
        """Training progress (step, epoch, loss, val_loss); ``output_model`` when done."""
        progress = self._poll(handle)
        if progress.state is WorkState.completed:
            details = {**progress.details, "output_model": handle["output_model"]}
            return Progress(progress.state, progress.percent, progress.message, details)
        return progress

    def cancel_customization(self, handle: Handle) -> None:
        """Ask the trainer to stop between steps (killed by a later poll if it does not)."""
        self._cancel(handle)

    def delete_customization(self, handle: Handle) -> None:
        """Stop the trainer and remove its files and the adapter."""
        self._delete(handle, Path(handle["output_model"]))


def _conforms(platform: LocalPlatform) -> ModelPlatform:
    """Static check (mypy) that LocalPlatform implements the port."""
    return platform
