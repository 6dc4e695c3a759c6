"""Fine-tuning through the Customizer (§7).

Each run creates its own customization config and requests a run-unique ``output_model``
(blueprint D17: a re-run never overwrites or reuses an earlier run's adapter). The platform
answers ``output_model = "{requested}@{job id}"``; the handle keeps that returned value.
A LoRA adapter is served by NIM Proxy without a deployment, so ``completed`` is reported
only once the proxy lists it (§7.6).

Each job carries ``custom_fields.flywheel_create_key`` (job id, candidate, ``customization``);
a start looks it up first and adopts a live job, and a create that NMP performed but answered
with a 5xx or a timeout is adopted before the retry (``NmpCalls.create_or_adopt``).
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

from flywheel.config.nim_catalogue import catalogue_entry
from flywheel.config.schema import CandidateModel, JobConfig
from flywheel.errors import ConfigError
from flywheel.platforms.base import Handle, Progress, WorkState
from flywheel.platforms.nemo.calls import NmpExists, NmpNotFound, as_dict, cancel_unless_ended
from flywheel.platforms.nemo.context import (
    CREATE_KEY_FIELD,
    CUSTOMIZER,
    ENTITY_STORE,
    LOOKUP_PAGE_SIZE,
    OWNER_FIELD,
    NmpContext,
    create_key,
    find_tagged,
    slug,
)

_JOBS = "/v1/customization/jobs"
_CONFIGS = "/v1/customization/configs"
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


def _last_value(status: dict[str, Any], key: str) -> float | None:
    value = status.get(key)
    if isinstance(value, int | float):
        return float(value)
    series = ((status.get("metrics") or {}).get("metrics") or {}).get(key) or []
    if series and isinstance(series[-1].get("value"), int | float):
        return float(series[-1]["value"])
    return None


def _failure(status: dict[str, Any]) -> str:
    """The platform's reason: the last status log with a ``detail`` (§7.6)."""
    logs = status.get("status_logs") or []
    for entry in reversed(logs):
        if entry.get("detail"):
            return str(entry["detail"])
    if logs and logs[-1].get("message"):
        return str(logs[-1]["message"])
    return "no reason given"


def _hyperparameters(candidate: CandidateModel, config: JobConfig) -> dict[str, Any]:
    training = config.training_config
    finetuning = candidate.customization.finetuning_type or training.finetuning_type
    if candidate.model_type == "embedding":
        emb = config.embedding_config
        if finetuning == "lora":
            finetuning = "all_weights"  # embedding targets train all weights or merged LoRA
        return {
            "training_type": "sft",
            "finetuning_type": finetuning,
            "epochs": emb.epochs,
            "batch_size": emb.batch_size,
            "learning_rate": emb.learning_rate,
        }
    hyper: dict[str, Any] = {
        "training_type": training.training_type,
        "finetuning_type": finetuning,
        "epochs": training.epochs,
        "batch_size": training.batch_size,
        "learning_rate": training.learning_rate,
    }
    if training.max_steps is not None:
        hyper["max_steps"] = training.max_steps
    if finetuning in ("lora", "lora_merged"):
        lora = config.lora_config
        hyper["lora"] = {
            "adapter_dim": lora.adapter_dim,
            "adapter_dropout": lora.adapter_dropout,
            "alpha": lora.alpha,
            "target_modules": list(lora.target_modules),
        }
    return hyper


class NmpCustomizations:
    """Start, poll, cancel and delete customization jobs."""

    def __init__(self, ctx: NmpContext) -> None:
        self._ctx = ctx

    def start(
        self, *, job_id: str, candidate: CandidateModel, datasets: Handle, config: JobConfig
    ) -> Handle:
        train = datasets.get("train_dataset")
        if not train:
            raise ConfigError("customization needs a training dataset; none was uploaded")
        entry = catalogue_entry(candidate.name)
        target = candidate.nim.customization_target or (
            entry.customization_target if entry else None
        )
        if target is None:
            raise ConfigError(
                f"candidate {candidate.name!r}: set nim.customization_target (the Customizer "
                "target, e.g. 'meta/llama-3.2-1b-instruct@2.0')"
            )
        ns, sdk, calls = self._ctx.namespace, self._ctx.sdk, self._ctx.calls
        hyper = _hyperparameters(candidate, config)
        model_part = slug(candidate.name.rsplit("/", 1)[-1], limit=30)
        config_name = f"fw-{slug(job_id, limit=24)}-{model_part}"
        max_seq = (
            config.embedding_config.max_seq_length
            if candidate.model_type == "embedding"
            else min(candidate.customization.max_seq_length, config.training_config.max_seq_length)
        )
        option = {
            "training_type": "sft",
            "finetuning_type": hyper["finetuning_type"],
            "num_gpus": max(1, candidate.gpus),
            "num_nodes": 1,
            "micro_batch_size": 1,
        }
        # An existing config is this job's own, from an earlier attempt.
        with contextlib.suppress(NmpExists):
            calls.run(
                CUSTOMIZER,
                f"POST {_CONFIGS}",
                lambda: sdk.customization.configs.create(
                    name=config_name,
                    namespace=ns,
                    target=target,
                    training_options=[option],
                    training_precision="bf16-mixed",
                    max_seq_length=max_seq,
                    custom_fields={OWNER_FIELD: job_id},
                ),
            )
        requested = f"{ns}/{model_part}-{slug(job_id, limit=24)}-{uuid.uuid4().hex[:6]}"
        extra: dict[str, Any] = {}
        if candidate.model_type == "embedding":
            hard = config.embedding_config.num_hard_negatives
            extra["dataset_parameters"] = {"num_hard_negatives": hard}
        key = create_key(job_id, candidate.name, "customization")
        # A repeated start (a worker lost between this call and the write of its handle)
        # adopts the job already running; a create NMP performed but answered 5xx is
        # adopted before the retry: never two trainings for one candidate.
        job = self._find(key) or calls.create_or_adopt(
            CUSTOMIZER,
            f"POST {_JOBS}",
            create=lambda: sdk.customization.jobs.create(
                name=f"fw-{slug(job_id, limit=24)}-{model_part}",
                config=f"{ns}/{config_name}",
                dataset={"name": train, "namespace": ns},
                hyperparameters=hyper,
                output_model=requested,
                custom_fields={OWNER_FIELD: job_id, CREATE_KEY_FIELD: key},
                **extra,
            ),
            find=lambda: self._find(key),
        )
        return {
            "job_id": str(job["id"]),
            "output_model": str(job.get("output_model") or requested),
            "requested_output_model": str(job.get("output_model") or requested).split("@", 1)[0],
            "config": f"{ns}/{config_name}",
            "finetuning_type": hyper["finetuning_type"],
            "base_model": candidate.name,
        }

    def _find(self, key: str) -> dict[str, Any] | None:
        """This create's job while it is live (created, pending, running), else ``None``."""
        sdk = self._ctx.sdk
        return find_tagged(
            lambda page: self._ctx.calls.run(
                CUSTOMIZER,
                f"GET {_JOBS}",
                lambda: sdk.customization.jobs.list(
                    page=page, page_size=LOOKUP_PAGE_SIZE, sort="-created_at"
                ),
            ),
            key,
            usable=lambda job: str(job.get("status")) in _LIVE,
        )

    def poll(self, handle: Handle) -> Progress:
        job_id, sdk = handle["job_id"], self._ctx.sdk
        try:
            status = as_dict(
                self._ctx.calls.run(
                    CUSTOMIZER,
                    f"GET {_JOBS}/{job_id}/status",
                    lambda: sdk.customization.jobs.status(job_id),
                )
            )
        except NmpNotFound:
            return Progress(
                WorkState.failed, message=f"NMP {CUSTOMIZER}: job {job_id} no longer exists"
            )
        name = str(status.get("status") or "unknown")
        state = _STATES.get(name, WorkState.running)
        percent = status.get("percentage_done")
        details: dict[str, Any] = {
            "status": name,
            "epoch": status.get("epochs_completed"),
            "step": status.get("steps_completed"),
            "loss": _last_value(status, "train_loss"),
            "val_loss": _last_value(status, "val_loss"),
            "output_model": handle["output_model"],
        }
        message: str | None = None
        if state is WorkState.failed:
            message = f"NMP {CUSTOMIZER}: job {job_id} failed: {_failure(status)}"
        elif name == "cancelling":
            message = f"job {job_id} is being cancelled"
        elif (
            state is WorkState.completed
            and handle["finetuning_type"] == "lora"
            and handle["output_model"] not in self._ctx.served_models()
        ):
            state = WorkState.running
            message = f"waiting for NIM Proxy to list {handle['output_model']}"
        return Progress(
            state,
            float(percent) if isinstance(percent, int | float) else None,
            message,
            details,
        )

    def _ended(self, job_id: str) -> bool:
        """Whether the job is gone, ended, or already being cancelled (nothing to cancel)."""
        sdk = self._ctx.sdk
        try:
            status = as_dict(
                self._ctx.calls.run(
                    CUSTOMIZER,
                    f"GET {_JOBS}/{job_id}/status",
                    lambda: sdk.customization.jobs.status(job_id),
                )
            )
        except NmpNotFound:
            return True
        name = str(status.get("status"))
        return name == "cancelling" or _STATES.get(name, WorkState.running).terminal

    def cancel(self, handle: Handle) -> None:
        job_id, sdk = handle["job_id"], self._ctx.sdk
        # The documented path (§12.1: not the reference client's /v1/customizations/...).
        cancel_unless_ended(
            self._ctx.calls,
            service=CUSTOMIZER,
            endpoint=f"POST {_JOBS}/{job_id}/cancel",
            cancel=lambda: sdk.customization.jobs.cancel(job_id),
            ended=lambda: self._ended(job_id),
        )

    def delete(self, handle: Handle) -> None:
        sdk, calls = self._ctx.sdk, self._ctx.calls
        model_ns, model_name = str(handle["output_model"]).split("/", 1)
        with contextlib.suppress(NmpNotFound):
            calls.run(
                ENTITY_STORE,
                f"DELETE /v1/models/{model_ns}/{model_name}",
                lambda: sdk.models.delete(model_name, namespace=model_ns),
            )
        config_ns, config_name = str(handle["config"]).split("/", 1)
        with contextlib.suppress(NmpNotFound):
            calls.run(
                CUSTOMIZER,
                f"DELETE {_CONFIGS}/{config_ns}/{config_name}",
                lambda: sdk.customization.configs.delete(config_name, namespace=config_ns),
            )
