"""Evaluation jobs on the Evaluator (§8).

Judge and candidate references (and their API keys, resolved only while a request body is
built, never written to a handle) come from :mod:`flywheel.platforms.nemo.references`.

**No duplicate jobs.** Each job carries ``custom_fields.flywheel_create_key`` (job id,
candidate, eval type). A start first looks for a live job with that key and adopts it (a
worker lost after the create redoes the start), and a create that NMP performed but answered
with a 5xx or a timeout is adopted before the retry (``NmpCalls.create_or_adopt``).

**Per-item results.** Once a job completes, :meth:`NmpEvaluations.outcome` downloads its
results archive (``download_results``, §8.5) and parses per-item generations or per-query
rankings (:mod:`flywheel.platforms.nemo.results`) so our own metric code rescores them; the
Evaluator's aggregate scores stay in ``platform_scores``. An archive without per-item data
(or one NMP cannot produce) leaves ``platform_scores`` only, with the reason in
``artifacts["per_item"]``.

**Served customized embedders.** A full-weight (not LoRA) customized embedding model is not
served until it is deployed (§5.1, §7.7: DMS with the embedding NIM image and
``disable_lora_support``; NIM Proxy then lists it as ``ns/name`` without ``@cust-…``). Its
evaluation handle is therefore a composite: ``start`` creates the deployment and keeps the
evaluation request in the handle (it holds no secret: a retriever target names NIM Proxy
only); ``poll`` reports the deployment phase as pending/running, creates the evaluation job
once the model is listed (found again by its create key, since a poll cannot rewrite the
handle), then reports the job. The deployment is shut down as soon as the job ends, and by
``cancel``/``delete`` (idempotent; one the job did not create is never shut down).
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

from flywheel.config.schema import CandidateModel, JobConfig
from flywheel.errors import ConfigError, PlatformError, PlatformUnavailable
from flywheel.platforms.base import EvalType, EvaluationOutcome, Handle, Progress, WorkState
from flywheel.platforms.nemo.calls import NmpNotFound, as_dict, cancel_unless_ended
from flywheel.platforms.nemo.context import (
    CREATE_KEY_FIELD,
    EVALUATOR,
    LOOKUP_PAGE_SIZE,
    OWNER_FIELD,
    NmpContext,
    create_key,
    find_tagged,
    slug,
)
from flywheel.platforms.nemo.deployments import NmpDeployments
from flywheel.platforms.nemo.payloads import (
    llm_eval_config,
    parse_scores,
    retriever_eval_config,
    retriever_target,
)
from flywheel.platforms.nemo.references import judge_reference, llm_target
from flywheel.platforms.nemo.results import PerItem, parse_archive

_JOBS = "/v1/evaluation/jobs"
_STATES = {
    "created": WorkState.pending,
    "pending": WorkState.pending,
    "running": WorkState.running,
    "cancelling": WorkState.running,
    "unknown": WorkState.running,
    "completed": WorkState.completed,
    "failed": WorkState.failed,
    "cancelled": WorkState.cancelled,
}
#: Jobs a repeated start adopts: still on their way. An ended job is never adopted, so a
#: deliberate re-run after it starts afresh (blueprint D17: run-unique outputs).
_LIVE = frozenset({"created", "pending", "running", "unknown"})


class NmpEvaluations:
    """Start, poll, read, cancel and delete evaluation jobs (and their serving deployments)."""

    def __init__(self, ctx: NmpContext, deployments: NmpDeployments) -> None:
        self._ctx = ctx
        self._deployments = deployments

    def start(
        self,
        *,
        job_id: str,
        candidate: CandidateModel,
        eval_type: EvalType,
        datasets: Handle,
        config: JobConfig,
        deployment: Handle | None,
        customization: Handle | None,
    ) -> Handle:
        model = self._model_id(candidate, eval_type, deployment, customization)
        key = create_key(job_id, candidate.name, eval_type)
        handle: Handle = {"job_id": None, "model": model, "eval_type": eval_type, "key": key}
        if candidate.model_type == "embedding":
            files_url = datasets.get("beir_files_url")
            if not files_url:
                raise ConfigError("retriever evaluation needs a BEIR dataset; none was uploaded")
            body, plan = retriever_eval_config(
                files_url=files_url, recall_k=config.embedding_config.recall_k
            )
            target = retriever_target(
                embeddings_url=f"{self._ctx.nim_url.rstrip('/')}/v1/embeddings", model_id=model
            )
            handle["kind"] = "retriever"
        else:
            kind = datasets.get("workload", "generic")
            files_url = (
                datasets.get("icl_files", {}).get(candidate.name)
                if eval_type == "icl"
                else datasets.get("eval_files", {}).get("base")
            )
            if not files_url:
                raise ConfigError(f"no {eval_type} eval file was uploaded for {candidate.name!r}")
            judge = judge_reference(config.llm_judge_config)
            if kind == "generic" and judge is None:
                raise ConfigError(
                    "llm_judge_config: a generic (non tool-calling) workload is scored by an "
                    "LLM judge on NMP; configure a 'remote' or 'deployed' judge"
                )
            body, plan = llm_eval_config(
                kind=kind,
                files_url=files_url,
                judge=judge,
                max_tokens=config.evaluation_config.max_new_tokens,
                parallelism=config.evaluation_config.max_concurrency,
            )
            target = llm_target(candidate, model)
            handle["kind"] = kind
        handle["plan"] = plan
        handle["task"] = next(iter(body["tasks"]))
        request = {"config": body, "target": target, "eval_type": eval_type}
        if _needs_serving(candidate, eval_type, customization):
            # Poll creates the job and finds it again by this key: one per handle (an
            # "attempt" suffix), so an earlier, cancelled attempt's job is never mistaken
            # for it. A redone start only re-finds the deployment (by name) and has
            # created no job yet, so nothing is duplicated.
            handle["key"] = f"{key}/{uuid.uuid4().hex[:8]}"
            handle["serving"] = self._serve(job_id, candidate, model)
            handle["request"] = request
            handle["owner"] = job_id
            return handle
        existing = self._find(key, live_only=True)
        handle["job_id"] = str(existing["id"]) if existing else self._create(job_id, key, request)
        return handle

    def _serve(self, job_id: str, candidate: CandidateModel, model: str) -> Handle:
        """Deploy a full-weight customized embedder under its served name ``ns/name``."""
        namespace, name = model.split("/", 1) if "/" in model else (candidate.nim.namespace, model)
        return self._deployments.serve(
            job_id=job_id,
            candidate=candidate,
            model=model,
            namespace=namespace,
            name=f"fw-{slug(job_id, limit=20)}-{slug(name, limit=36)}",
        )

    def _create(self, job_id: str, key: str, request: dict[str, Any]) -> str:
        """Create the job tagged ``key``, adopting it if a failed attempt made it; its id."""
        sdk = self._ctx.sdk
        created = self._ctx.calls.create_or_adopt(
            EVALUATOR,
            f"POST {_JOBS}",
            create=lambda: sdk.evaluation.jobs.create(
                config=request["config"],
                target=request["target"],
                namespace=self._ctx.namespace,
                custom_fields={
                    OWNER_FIELD: job_id,
                    CREATE_KEY_FIELD: key,
                    "eval_type": request["eval_type"],
                },
            ),
            # Live only: an older, ended job with the same key is not this attempt's.
            find=lambda: self._find(key, live_only=True),
        )
        return str(created["id"])

    def _find(self, key: str, *, live_only: bool) -> dict[str, Any] | None:
        """The newest job tagged with ``key`` (a live one only, if so asked), if any.

        Listed with ``filter[custom_fields]`` (§2.4), newest first.
        """
        sdk = self._ctx.sdk
        return find_tagged(
            lambda page: self._ctx.calls.run(
                EVALUATOR,
                f"GET {_JOBS}",
                lambda: sdk.evaluation.jobs.list(
                    filter={"custom_fields": {CREATE_KEY_FIELD: key}},
                    page=page,
                    page_size=LOOKUP_PAGE_SIZE,
                    sort="-created_at",
                ),
            ),
            key,
            usable=lambda job: not live_only or str(job.get("status")) in _LIVE,
        )

    def _job_id(self, handle: Handle) -> str | None:
        """The handle's job id; a composite handle's job is found by its create key."""
        if handle.get("job_id"):
            return str(handle["job_id"])
        if "serving" not in handle:
            return None
        found = self._find(handle["key"], live_only=False)
        return str(found["id"]) if found is not None else None

    @staticmethod
    def _model_id(
        candidate: CandidateModel,
        eval_type: EvalType,
        deployment: Handle | None,
        customization: Handle | None,
    ) -> str:
        if eval_type == "customized":
            if not customization or not customization.get("output_model"):
                raise ConfigError("a customized evaluation needs the customization's output model")
            model = str(customization["output_model"])
            if customization.get("finetuning_type") != "lora":
                # Full-weight outputs are served (after a DMS deployment) without "@cust-…" (§6).
                model = model.split("@", 1)[0]
            return model
        if deployment and deployment.get("model"):
            return str(deployment["model"])
        return candidate.endpoint_model or candidate.name

    def _job(self, job_id: str) -> dict[str, Any] | None:
        sdk = self._ctx.sdk
        try:
            found = self._ctx.calls.run(
                EVALUATOR, f"GET {_JOBS}/{job_id}", lambda: sdk.evaluation.jobs.retrieve(job_id)
            )
        except NmpNotFound:
            return None
        return as_dict(found)

    def poll(self, handle: Handle) -> Progress:
        job_id = self._job_id(handle)
        if job_id is None:
            return self._poll_serving(handle)
        job = self._job(job_id)
        if job is None:
            self._stop_serving(handle)
            return Progress(
                WorkState.failed, message=f"NMP {EVALUATOR}: job {job_id} no longer exists"
            )
        name = str(job.get("status") or "unknown")
        details = job.get("status_details") or {}
        progress = details.get("progress")
        state = _STATES.get(name, WorkState.running)
        message = details.get("message")
        if state is WorkState.failed:
            message = f"NMP {EVALUATOR}: job {job_id} failed: {message or 'no reason given'}"
        if state.terminal:
            self._stop_serving(handle)  # the served model is needed no longer
        return Progress(
            state,
            float(progress) if isinstance(progress, int | float) else 0.0,
            message,
            {"status": name, "samples_processed": details.get("samples_processed")},
        )

    def _poll_serving(self, handle: Handle) -> Progress:
        """The deployment phase of a composite handle; creates the job once it serves."""
        serving = handle.get("serving")
        if serving is None:
            return Progress(WorkState.failed, message="evaluation handle names no NMP job")
        deployed = self._deployments.poll(serving)
        model = serving["model"]
        if deployed.state is WorkState.ready:
            job_id = self._create(handle["owner"], handle["key"], handle["request"])
            return Progress(
                WorkState.running,
                0.0,
                f"{model} is served; NMP {EVALUATOR} job {job_id} started",
                {"phase": "evaluation", "status": "created"},
            )
        if deployed.state.terminal:
            self._stop_serving(handle)
            reason = deployed.message or deployed.state.value
            return Progress(
                WorkState.failed if deployed.state is WorkState.failed else WorkState.cancelled,
                message=f"serving the customized model {model} for evaluation failed: {reason}",
                details={"phase": "deployment", **deployed.details},
            )
        return Progress(
            WorkState.pending if deployed.state is WorkState.pending else WorkState.running,
            0.0,
            f"deploying {model} for its evaluation: {deployed.message or deployed.state.value}",
            {"phase": "deployment", **deployed.details},
        )

    def _stop_serving(self, handle: Handle) -> None:
        if handle.get("serving") is not None:
            self._deployments.shutdown(handle["serving"])

    def outcome(self, handle: Handle) -> EvaluationOutcome:
        job_id, sdk = self._job_id(handle), self._ctx.sdk
        if job_id is None:
            raise PlatformError(
                f"NMP {EVALUATOR}: no evaluation job was started for {handle.get('model')} "
                "(its model was never served); nothing to read"
            )
        results = as_dict(
            self._ctx.calls.run(
                EVALUATOR,
                f"GET {_JOBS}/{job_id}/results",
                lambda: sdk.evaluation.jobs.results(job_id),
            )
        )
        scores = parse_scores(results, handle["plan"])
        if not scores:
            # Results can lag completion with empty metrics (§8.5): transient, poll again.
            raise PlatformUnavailable(
                f"NMP {EVALUATOR}: GET {_JOBS}/{job_id}/results holds none of the expected "
                f"scores ({', '.join(sorted({p['name'] for p in handle['plan']}))}) yet"
            )
        artifacts = {"evaluation_job": job_id}
        for key in ("id", "files_url"):
            if results.get(key):
                artifacts[f"result_{key}"] = str(results[key])
        per_item = self._per_item(job_id, handle)
        if per_item.source is not None:
            artifacts["per_item"] = f"download-results: {per_item.source}"
        else:
            artifacts["per_item"] = f"unavailable: {per_item.reason}"
        return EvaluationOutcome(
            platform_scores=scores,
            predictions=per_item.predictions,
            rankings=per_item.rankings,
            artifacts=artifacts,
        )

    def _per_item(self, job_id: str, handle: Handle) -> PerItem:
        """Per-item data from the results archive; a permanent failure is a recorded reason.

        Transient failures (5xx, timeouts) propagate, so finalize retries rather than
        settle for aggregate scores.
        """
        sdk = self._ctx.sdk
        endpoint = f"GET {_JOBS}/{job_id}/download-results"
        try:
            content = self._ctx.calls.run(
                EVALUATOR, endpoint, lambda: sdk.evaluation.jobs.download_results(job_id).read()
            )
        except PlatformUnavailable:
            raise
        except PlatformError as exc:
            return PerItem(reason=str(exc))
        return parse_archive(
            content, retriever=handle.get("kind") == "retriever", task=handle.get("task")
        )

    def _ended(self, job_id: str) -> bool:
        """Whether the job is gone, ended, or already being cancelled (nothing to cancel)."""
        job = self._job(job_id)
        if job is None:
            return True
        name = str(job.get("status"))
        return name == "cancelling" or _STATES.get(name, WorkState.running).terminal

    def cancel(self, handle: Handle) -> None:
        job_id, sdk = self._job_id(handle), self._ctx.sdk
        if job_id is not None:
            cancel_unless_ended(
                self._ctx.calls,
                service=EVALUATOR,
                endpoint=f"POST {_JOBS}/{job_id}/cancel",
                cancel=lambda: sdk.evaluation.jobs.cancel(job_id),
                ended=lambda: self._ended(job_id),
            )
        self._stop_serving(handle)

    def delete(self, handle: Handle) -> None:
        job_id, sdk = self._job_id(handle), self._ctx.sdk
        if job_id is not None:
            with contextlib.suppress(NmpNotFound):
                self._ctx.calls.run(
                    EVALUATOR,
                    f"DELETE {_JOBS}/{job_id}",
                    lambda: sdk.evaluation.jobs.delete(job_id),
                )
        self._stop_serving(handle)


def _needs_serving(
    candidate: CandidateModel, eval_type: EvalType, customization: Handle | None
) -> bool:
    """A full-weight customized embedder must be deployed before it can be evaluated."""
    return (
        candidate.model_type == "embedding"
        and eval_type == "customized"
        and customization is not None
        and customization.get("finetuning_type") != "lora"
    )
