"""Evaluation jobs on the Evaluator (§8).

The judge's API key is named by ``llm_judge_config.api_key_env`` (and a candidate's by its
own ``api_key_env``) and read from the environment only while the request body is built;
it is sent to the Evaluator inside the inline config and never written to a handle.
"""

from __future__ import annotations

import os
from typing import Any

from flywheel.config.schema import CandidateModel, JobConfig, LLMJudgeConfig
from flywheel.errors import ConfigError, PlatformUnavailable
from flywheel.platforms.base import EvalType, EvaluationOutcome, Handle, Progress, WorkState
from flywheel.platforms.nemo.calls import NmpNotFound, as_dict, cancel_unless_ended
from flywheel.platforms.nemo.context import EVALUATOR, OWNER_FIELD, NmpContext
from flywheel.platforms.nemo.payloads import (
    llm_eval_config,
    parse_scores,
    retriever_eval_config,
    retriever_target,
)

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


def _secret(env_name: str | None, what: str) -> str | None:
    if env_name is None:
        return None
    value = os.environ.get(env_name)
    if not value:
        raise ConfigError(f"{what}: environment variable {env_name} (api_key_env) is not set")
    return value


def _chat_url(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith("/chat/completions") else f"{url}/chat/completions"


def judge_reference(judge: LLMJudgeConfig) -> str | dict[str, Any] | None:
    """The judge model as the Evaluator takes it; resolves the key (call only to build a body)."""
    if judge.type == "none":
        return None
    if judge.type == "deployed":
        return judge.model_name
    if judge.type == "remote":
        endpoint: dict[str, Any] = {"url": _chat_url(str(judge.url)), "model_id": judge.model_name}
        key = _secret(judge.api_key_env, "llm_judge_config")
        if key is not None:
            endpoint["api_key"] = key
        return {"api_endpoint": endpoint}
    raise ConfigError(
        "llm_judge_config: type 'local' runs in-process and cannot judge on the NMP "
        "Evaluator; use 'remote' or 'deployed'"
    )


class NmpEvaluations:
    """Start, poll, read, cancel and delete evaluation jobs."""

    def __init__(self, ctx: NmpContext) -> None:
        self._ctx = ctx

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
        handle: Handle = {"job_id": None, "model": model, "eval_type": eval_type}
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
            target = self._llm_target(candidate, model)
            handle["kind"] = kind
        sdk = self._ctx.sdk
        created = self._ctx.calls.run(
            EVALUATOR,
            f"POST {_JOBS}",
            lambda: sdk.evaluation.jobs.create(
                config=body,
                target=target,
                namespace=self._ctx.namespace,
                custom_fields={OWNER_FIELD: job_id, "eval_type": eval_type},
            ),
        )
        handle["job_id"] = str(as_dict(created)["id"])
        handle["plan"] = plan
        return handle

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

    @staticmethod
    def _llm_target(candidate: CandidateModel, model: str) -> dict[str, Any]:
        if candidate.endpoint_url and model == (candidate.endpoint_model or candidate.name):
            endpoint: dict[str, Any] = {
                "url": _chat_url(candidate.endpoint_url),
                "model_id": model,
                "format": "openai",
            }
            key = _secret(candidate.api_key_env, f"candidate {candidate.name!r}")
            if key is not None:
                endpoint["api_key"] = key
            return {"type": "model", "model": {"api_endpoint": endpoint}}
        return {"type": "model", "model": model}

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
        job_id = handle["job_id"]
        job = self._job(job_id)
        if job is None:
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
        return Progress(
            state,
            float(progress) if isinstance(progress, int | float) else 0.0,
            message,
            {"status": name, "samples_processed": details.get("samples_processed")},
        )

    def outcome(self, handle: Handle) -> EvaluationOutcome:
        job_id, sdk = handle["job_id"], self._ctx.sdk
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
        return EvaluationOutcome(platform_scores=scores, artifacts=artifacts)

    def _ended(self, job_id: str) -> bool:
        """Whether the job is gone, ended, or already being cancelled (nothing to cancel)."""
        job = self._job(job_id)
        if job is None:
            return True
        name = str(job.get("status"))
        return name == "cancelling" or _STATES.get(name, WorkState.running).terminal

    def cancel(self, handle: Handle) -> None:
        job_id, sdk = handle["job_id"], self._ctx.sdk
        cancel_unless_ended(
            self._ctx.calls,
            service=EVALUATOR,
            endpoint=f"POST {_JOBS}/{job_id}/cancel",
            cancel=lambda: sdk.evaluation.jobs.cancel(job_id),
            ended=lambda: self._ended(job_id),
        )

    def delete(self, handle: Handle) -> None:
        job_id, sdk = handle["job_id"], self._ctx.sdk
        try:
            self._ctx.calls.run(
                EVALUATOR, f"DELETE {_JOBS}/{job_id}", lambda: sdk.evaluation.jobs.delete(job_id)
            )
        except NmpNotFound:
            return
