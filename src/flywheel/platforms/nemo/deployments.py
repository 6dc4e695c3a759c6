"""NIM deployments through Deployment Management (§5), ready once NIM Proxy lists them (§6).

Ownership: a deployment this job creates carries ``custom_fields.flywheel_job_id``; the
handle says ``owned`` only then, so shutdown never removes a NIM another job or a person
started. A duplicate create (409, or DMS's 500 "model deployment already exists") is read
back and owned only if it carries this job's id (an at-least-once retry of our own create);
so is one DMS performed but answered with a 5xx or a timeout (``NmpCalls.create_or_adopt``).
"""

from __future__ import annotations

from typing import Any

from flywheel.config.nim_catalogue import catalogue_entry
from flywheel.config.schema import CandidateModel
from flywheel.errors import ConfigError
from flywheel.platforms.base import Handle, Progress, WorkState
from flywheel.platforms.nemo.calls import NmpExists, NmpNotFound, as_dict
from flywheel.platforms.nemo.context import DMS, OWNER_FIELD, NmpContext

_PATH = "/v1/deployment/model-deployments"
_WAITING = {"created": WorkState.pending, "pending": WorkState.pending}


def _nim_config(candidate: CandidateModel, model: str) -> dict[str, Any]:
    entry = catalogue_entry(candidate.name)
    image = candidate.nim.image_name or (entry.image if entry else f"nvcr.io/nim/{candidate.name}")
    tag = candidate.nim.image_tag or (entry.tag if entry else None)
    if tag is None:
        raise ConfigError(
            f"candidate {candidate.name!r}: set nim.image_tag (the model is not in the NIM "
            "catalogue, so its NIM image tag is unknown)"
        )
    nim: dict[str, Any] = {
        "image_name": image,
        "image_tag": tag,
        "pvc_size": candidate.nim.pvc_size,
        "gpu": max(1, candidate.gpus),
    }
    if candidate.model_type == "embedding":
        nim["disable_lora_support"] = True  # embedding NIMs do not serve LoRA adapters (§5.1)
    # ``model`` is the name NIM Proxy serves: the candidate, or a full-weight customized
    # output ``ns/name`` served by the candidate's NIM image (§5.1, §7.7).
    return {"model": model, "nim_deployment": nim}


class NmpDeployments:
    """Start, poll and shut down NIM deployments."""

    def __init__(self, ctx: NmpContext) -> None:
        self._ctx = ctx

    def start(self, *, job_id: str, candidate: CandidateModel) -> Handle:
        if candidate.endpoint_url:
            model = candidate.endpoint_model or candidate.name
            return {"kind": "external", "model": model, "owned": False}
        return self.serve(
            job_id=job_id,
            candidate=candidate,
            model=candidate.name,
            namespace=candidate.nim.namespace,
            name=candidate.name.replace("/", "-"),  # deployment names are slash-free
        )

    def serve(
        self, *, job_id: str, candidate: CandidateModel, model: str, namespace: str, name: str
    ) -> Handle:
        """Deploy ``model`` with the candidate's NIM settings, or reuse one already served."""
        ns = namespace
        handle: Handle = {"kind": "nim", "model": model, "namespace": ns, "name": name}
        # DMS first: a deployment an earlier attempt of this job created stays owned (and is
        # shut down later) even when it already serves.
        existing = self._retrieve(ns, name)
        if existing is None and model in self._ctx.served_models():
            return {"kind": "served", "model": model, "owned": False}
        if existing is None:
            config = _nim_config(candidate, model)
            sdk = self._ctx.sdk
            try:
                # A create DMS performed but answered 5xx is found by name before the retry.
                existing = self._ctx.calls.create_or_adopt(
                    DMS,
                    f"POST {_PATH}",
                    create=lambda: sdk.deployment.model_deployments.create(
                        name=name,
                        namespace=ns,
                        config=config,
                        models=[model],
                        custom_fields={OWNER_FIELD: job_id},
                    ),
                    find=lambda: self._retrieve(ns, name),
                )
            except NmpExists:
                existing = self._retrieve(ns, name)
                if existing is None:
                    raise
        owner = (existing.get("custom_fields") or {}).get(OWNER_FIELD)
        return {**handle, "owned": owner == job_id}

    def _retrieve(self, ns: str, name: str) -> dict[str, Any] | None:
        sdk = self._ctx.sdk
        try:
            found = self._ctx.calls.run(
                DMS,
                f"GET {_PATH}/{ns}/{name}",
                lambda: sdk.deployment.model_deployments.retrieve(name, namespace=ns),
            )
        except NmpNotFound:
            return None
        return as_dict(found)

    def poll(self, handle: Handle) -> Progress:
        if handle["kind"] != "nim":
            return Progress(WorkState.ready, 100.0)
        record = self._retrieve(handle["namespace"], handle["name"])
        where = f"deployment {handle['namespace']}/{handle['name']}"
        if record is None:
            return Progress(WorkState.failed, message=f"NMP {DMS}: {where} no longer exists")
        details = record.get("status_details") or {}
        status = str(details.get("status") or "unknown")
        description = details.get("description")
        if status == "ready":
            if handle["model"] in self._ctx.served_models():
                return Progress(WorkState.ready, 100.0)
            return Progress(
                WorkState.running,
                message=f"{where} is ready; waiting for NIM Proxy to list {handle['model']}",
            )
        if status in ("failed", "cancelled"):
            reason = description or "no reason given"
            return Progress(
                WorkState.failed if status == "failed" else WorkState.cancelled,
                message=f"NMP {DMS}: {where} {status}: {reason}",
                details={"status": status},
            )
        return Progress(
            _WAITING.get(status, WorkState.running),
            message=description,
            details={"status": status},
        )

    def shutdown(self, handle: Handle) -> None:
        if handle.get("kind") != "nim" or not handle.get("owned"):
            return
        ns, name, sdk = handle["namespace"], handle["name"], self._ctx.sdk
        try:
            self._ctx.calls.run(
                DMS,
                f"DELETE {_PATH}/{ns}/{name}",
                lambda: sdk.deployment.model_deployments.delete(name, namespace=ns),
            )
        except NmpNotFound:
            return
