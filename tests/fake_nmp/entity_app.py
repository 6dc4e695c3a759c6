"""Host N: Entity Store, Deployment Management, Customizer and Evaluator (nmp-api.md §4-§8)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from tests.fake_nmp.archives import build_archive
from tests.fake_nmp.common import (
    conflict,
    error,
    install_crud,
    install_faults,
    json_body,
    missing_fields,
    not_found,
    page,
)
from tests.fake_nmp.state import FakeNMP, Work, new_id, now

_TERMINAL = {"completed", "failed", "cancelled", "ready"}
#: A second cancel while one is under way is refused like a cancel of an ended job.
_UNCANCELLABLE = _TERMINAL | {"cancelling"}


def _ref(value: Any) -> str:
    """An entity reference echoed as ``namespace/name`` (jobs echo strings, §7.4)."""
    if isinstance(value, dict):
        if "name" in value:
            return f"{value.get('namespace') or 'default'}/{value['name']}"
        return str(value.get("files_url", ""))
    return str(value)


def create_entity_app(state: FakeNMP) -> FastAPI:
    """The N host app over ``state``."""
    app = FastAPI(title="fake NMP (N)")
    install_faults(app, state, "N")
    _namespaces(app, state)
    install_crud(app, state, prefix="/v1/datasets", table=state.datasets, kind="dataset",
                 id_prefix="dataset", required=("files_url",))  # fmt: skip
    install_crud(app, state, prefix="/v1/models", table=state.models, kind="model",
                 id_prefix="model")  # fmt: skip
    install_crud(app, state, prefix="/v1/customization/configs",
                 table=state.customization_configs, kind="customization_config",
                 id_prefix="customization_config",
                 required=("max_seq_length", "training_options"))  # fmt: skip
    install_crud(app, state, prefix="/v1/evaluation/configs", table=state.evaluation_configs,
                 kind="evaluation_config", id_prefix="eval-config", required=("type",))  # fmt: skip
    install_crud(app, state, prefix="/v1/evaluation/targets", table=state.evaluation_targets,
                 kind="evaluation_target", id_prefix="eval-target", required=("type",))  # fmt: skip
    _deployments(app, state)
    _customization_jobs(app, state)
    _evaluation_jobs(app, state)
    return app


def _namespaces(app: FastAPI, state: FakeNMP) -> None:
    @app.post("/v1/namespaces")
    async def create(request: Request) -> Response:
        body = await json_body(request)
        if (invalid := missing_fields(body, "id")) is not None:
            return invalid
        key = str(body["id"])
        with state.lock:
            if key in state.namespaces:
                return conflict("namespace", key)
            record = {**body, "created_at": now(), "updated_at": now()}
            state.namespaces[key] = record
            state.record("created", "namespace", key, "POST", request.url.path)
        return JSONResponse(record)

    @app.get("/v1/namespaces")
    def list_all(request: Request) -> dict[str, Any]:
        with state.lock:
            return page(request, list(state.namespaces.values()))

    @app.get("/v1/namespaces/{namespace_id}")
    def retrieve(namespace_id: str) -> Response:
        with state.lock:
            if namespace_id not in state.namespaces:
                return not_found("namespace", namespace_id)
            return JSONResponse(state.namespaces[namespace_id])

    @app.delete("/v1/namespaces/{namespace_id}")
    def delete(namespace_id: str, request: Request) -> Response:
        with state.lock:
            if state.namespaces.pop(namespace_id, None) is None:
                return not_found("namespace", namespace_id)
            state.record("deleted", "namespace", namespace_id, "DELETE", request.url.path)
        return JSONResponse({"id": namespace_id, "deleted_at": now(), "message": "deleted"})


def _deployments(app: FastAPI, state: FakeNMP) -> None:
    prefix = "/v1/deployment/model-deployments"

    @app.post(prefix)
    async def create(request: Request) -> Response:
        body = await json_body(request)
        if (invalid := missing_fields(body, "config", "name")) is not None:
            return invalid
        namespace = body.get("namespace") or "default"
        key = f"{namespace}/{body['name']}"
        with state.lock:
            if key in state.deployments:
                if state.dms_duplicate_as_500:
                    # The DMS quirk (§2.5): a duplicate answered as a 500.
                    return error(500, f"model deployment already exists: {key}", retry=False)
                return conflict("model deployment", key)
            record = {
                **body,
                "namespace": namespace,
                "url": f"http://nim.fake/{key}",
                "deployed": False,
                "created_at": now(),
                "updated_at": now(),
                "custom_fields": body.get("custom_fields") or {},
            }
            state.deployments[key] = state.new_deployment(record)
            state.bodies.append(("POST", prefix, body))
            state.record("created", "model_deployment", key, "POST", request.url.path)
        return JSONResponse(record)

    @app.get(prefix)
    def list_all(request: Request) -> dict[str, Any]:
        with state.lock:
            return page(request, [w.record for w in state.deployments.values()])

    @app.get(prefix + "/{namespace}/{name}")
    def retrieve(namespace: str, name: str) -> Response:
        key = f"{namespace}/{name}"
        with state.lock:
            work = state.deployments.get(key)
            if work is None:
                return not_found("model deployment", key)
            state.observe(work)
            return JSONResponse(work.record)

    @app.delete(prefix + "/{namespace}/{name}")
    def delete(namespace: str, name: str, request: Request) -> Response:
        key = f"{namespace}/{name}"
        with state.lock:
            work = state.deployments.pop(key, None)
            if work is None:
                return not_found("model deployment", key)
            config = work.record["config"]
            model = config.get("model") if isinstance(config, dict) else None
            state.served.pop(str(model or name), None)
            state.record("deleted", "model_deployment", key, "DELETE", request.url.path)
        return JSONResponse({"id": key, "deleted_at": now(), "message": "deleted"})


def _customization_jobs(app: FastAPI, state: FakeNMP) -> None:
    prefix = "/v1/customization/jobs"

    def job_or_404(job_id: str) -> Work | JSONResponse:
        work = state.customization_jobs.get(job_id)
        return work if work is not None else not_found("customization job", job_id)

    @app.post(prefix)
    async def create(request: Request) -> Response:
        body = await json_body(request)
        if (invalid := missing_fields(body, "config", "dataset", "hyperparameters")) is not None:
            return invalid
        hyper = dict(body["hyperparameters"])
        if (invalid := missing_fields(hyper, "finetuning_type")) is not None:
            return invalid
        config_ref, dataset_ref = _ref(body["config"]), _ref(body["dataset"])
        with state.lock:
            config = state.customization_configs.get(config_ref)
            if isinstance(body["config"], str) and config is None:
                return not_found("customization config", config_ref)
            if not dataset_ref.startswith("hf://") and dataset_ref not in state.datasets:
                return not_found("dataset", dataset_ref)
            config = config or dict(body["config"])
            job_id = new_id("cust")
            target = _ref(config.get("target") or "unknown/unknown")
            option = (config.get("training_options") or [{}])[0]
            hyper.setdefault("training_type", "sft")
            if hyper["finetuning_type"] == "lora":
                hyper["lora"] = {"alpha": 16, "target_modules": None, **(hyper.get("lora") or {})}
            record: dict[str, Any] = {
                "id": job_id,
                "namespace": body.get("namespace") or "default",
                "status": "created",
                "warnings": None,
                "config": config_ref,
                "dataset": dataset_ref,
                "hyperparameters": hyper,
                "custom_fields": body.get("custom_fields") or {},
                "config_snapshot": {
                    "base_model": target.split("@", 1)[0],
                    "max_seq_length": config.get("max_seq_length", 4096),
                    "precision": config.get("training_precision", "bf16-mixed"),
                    "training_option": option,
                },
                "created_at": now(),
                "updated_at": now(),
                "status_details": {
                    "status": "created",
                    "created_at": now(),
                    "updated_at": now(),
                    "elapsed_time": 0.0,
                    "steps_completed": 0,
                    "epochs_completed": 0,
                    "percentage_done": 0.0,
                    "status_logs": [{"updated_at": now(), "message": "created"}],
                },
            }
            if body.get("output_model"):
                output = f"{body['output_model']}@{job_id}"
                record["output_model"] = output
                model_ns, model_name = output.split("/", 1)
                state.models[output] = {
                    "id": new_id("model"),
                    "name": model_name,
                    "namespace": model_ns,
                    "base_model": target.split("@", 1)[0],
                    "peft": {"finetuning_type": hyper["finetuning_type"]},
                    "artifact": {"files_url": f"nds://models/{output}", "status": "created"},
                    "created_at": now(),
                    "updated_at": now(),
                }
                state.record("created", "model", output, "POST", request.url.path)
            state.customization_jobs[job_id] = state.new_customization(record)
            state.bodies.append(("POST", prefix, body))
            state.record("created", "customization_job", job_id, "POST", request.url.path)
        return JSONResponse(record)

    @app.get(prefix)
    def list_all(request: Request) -> dict[str, Any]:
        with state.lock:
            return page(request, [w.record for w in state.customization_jobs.values()])

    @app.get(prefix + "/{job_id}")
    def retrieve(job_id: str) -> Response:
        with state.lock:
            work = job_or_404(job_id)
            if isinstance(work, JSONResponse):
                return work
            state.observe(work)
            return JSONResponse(work.record)

    @app.get(prefix + "/{job_id}/status")
    def status(job_id: str) -> Response:
        with state.lock:
            work = job_or_404(job_id)
            if isinstance(work, JSONResponse):
                return work
            state.observe(work)
            return JSONResponse(work.record["status_details"])

    @app.post(prefix + "/{job_id}/cancel")
    def cancel(job_id: str, request: Request) -> Response:
        with state.lock:
            work = job_or_404(job_id)
            if isinstance(work, JSONResponse):
                return work
            if work.record["status"] in _UNCANCELLABLE:
                return error(400, f"job {job_id} is already {work.record['status']}", retry=False)
            state.cancel(work)
            state.record("cancelled", "customization_job", job_id, "POST", request.url.path)
            return JSONResponse(work.record)


def _inline(
    state: FakeNMP, table: dict[str, dict[str, Any]], value: Any, prefix: str
) -> dict[str, Any] | None:
    """Resolve a ``ns/name`` reference, or persist an inline object under a generated name."""
    if isinstance(value, str):
        return table.get(value)
    name = new_id(prefix)
    record = {
        **value,
        "id": name,
        "name": name,
        "namespace": "default",
        "created_at": now(),
        "updated_at": now(),
    }
    table[f"default/{name}"] = record
    return record


def _evaluation_jobs(app: FastAPI, state: FakeNMP) -> None:
    prefix = "/v1/evaluation/jobs"

    def job_or_404(job_id: str) -> Work | JSONResponse:
        work = state.evaluation_jobs.get(job_id)
        return work if work is not None else not_found("evaluation job", job_id)

    @app.post(prefix)
    async def create(request: Request) -> Response:
        body = await json_body(request)
        if (invalid := missing_fields(body, "config", "target")) is not None:
            return invalid
        with state.lock:
            config = _inline(state, state.evaluation_configs, body["config"], "eval-config")
            target = _inline(state, state.evaluation_targets, body["target"], "eval-target")
            if config is None:
                return not_found("evaluation config", str(body["config"]))
            if target is None:
                return not_found("evaluation target", str(body["target"]))
            job_id = new_id("eval")
            record = {
                "id": job_id,
                "namespace": body.get("namespace") or "default",
                "status": "created",
                "status_details": {"message": None, "task_status": {}, "progress": None},
                "config": config,
                "target": target,
                "custom_fields": body.get("custom_fields") or {},
                "created_at": now(),
                "updated_at": now(),
            }
            state.evaluation_jobs[job_id] = state.new_evaluation(record)
            state.bodies.append(("POST", prefix, body))
            state.record("created", "evaluation_job", job_id, "POST", request.url.path)
            public = {k: v for k, v in record.items() if k != "results"}
        return JSONResponse(public)

    @app.get(prefix)
    def list_all(request: Request) -> dict[str, Any]:
        with state.lock:
            records = [
                {k: v for k, v in w.record.items() if k != "results"}
                for w in state.evaluation_jobs.values()
            ]
            return page(request, records)

    @app.get(prefix + "/{job_id}")
    def retrieve(job_id: str) -> Response:
        with state.lock:
            work = job_or_404(job_id)
            if isinstance(work, JSONResponse):
                return work
            state.observe(work)
            return JSONResponse({k: v for k, v in work.record.items() if k != "results"})

    @app.get(prefix + "/{job_id}/status")
    def status(job_id: str) -> Response:
        with state.lock:
            work = job_or_404(job_id)
            if isinstance(work, JSONResponse):
                return work
            state.observe(work)
            return JSONResponse({"status": work.record["status"], **work.record["status_details"]})

    @app.get(prefix + "/{job_id}/results")
    def results(job_id: str) -> Response:
        with state.lock:
            work = job_or_404(job_id)
            if isinstance(work, JSONResponse):
                return work
            found = work.record.get("results")
            if found is None:
                # Before completion the result exists with empty metrics (§8.5, §14.10).
                found = {"job": job_id, "tasks": {}, "groups": {}}
            return JSONResponse(found)

    @app.get(prefix + "/{job_id}/download-results")
    def download_results(job_id: str) -> Response:
        with state.lock:
            work = job_or_404(job_id)
            if isinstance(work, JSONResponse):
                return work
            if work.record["status"] != "completed":
                return not_found("evaluation results", job_id)
            content = build_archive(state, work.record)
        return Response(content, media_type="application/zip")

    @app.post(prefix + "/{job_id}/cancel")
    def cancel(job_id: str, request: Request) -> Response:
        with state.lock:
            work = job_or_404(job_id)
            if isinstance(work, JSONResponse):
                return work
            if work.record["status"] in _UNCANCELLABLE:
                return error(400, f"job {job_id} is already {work.record['status']}", retry=False)
            state.cancel(work)
            state.record("cancelled", "evaluation_job", job_id, "POST", request.url.path)
            return JSONResponse({k: v for k, v in work.record.items() if k != "results"})

    @app.delete(prefix + "/{job_id}")
    def delete(job_id: str, request: Request) -> Response:
        with state.lock:
            if state.evaluation_jobs.pop(job_id, None) is None:
                return not_found("evaluation job", job_id)
            state.record("deleted", "evaluation_job", job_id, "DELETE", request.url.path)
        return Response(status_code=204)
