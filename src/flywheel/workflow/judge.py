"""The job's LLM judge: made ready before any candidate is evaluated.

A job's evaluations may need its judge (``llm_judge_config``); finding out that it is
missing only when the first evaluation asks it wastes the deployments and GPUs of every
candidate. So the workflow makes the judge ready first (the *judge* stage, between the
datasets and the candidates):

* ``remote``: :func:`probe_remote_judge` checks that the OpenAI-compatible server answers;
* ``deployed``: a model the platform already serves is used as it is (a shared judge, never
  shut down by the job); otherwise :func:`judge_candidate` describes it to the platform's
  ``start_deployment``, the job leases its GPUs and shuts it down when it ends;
* ``local`` and ``none``: nothing to prepare.
"""

from __future__ import annotations

import os

import httpx

from flywheel.config.nim_catalogue import catalogue_entry
from flywheel.config.schema import CandidateModel, LLMJudgeConfig, NimSettings
from flywheel.errors import PlatformError, PlatformUnavailable

JUDGE_OWNER = "@judge"
"""The judge's name in GPU lease owners (``<job_id>/@judge``): no candidate name starts with
``@``, so it can never collide with one."""

PROBE_TIMEOUT_S = 10.0

# Judge statuses (``state.judge.status``).
J_PENDING, J_QUEUED, J_STARTING, J_READY, J_FAILED, J_SHUT_DOWN = (
    "pending",
    "queued",
    "starting",
    "ready",
    "failed",
    "shut_down",
)


def judge_gpus(judge: LLMJudgeConfig) -> int:
    """GPUs a deployed judge holds: its own ``gpus``, else its catalogue entry's, else 0."""
    if judge.gpus > 0 or not judge.model_name:
        return judge.gpus
    entry = catalogue_entry(judge.model_name)
    return entry.gpus if entry is not None else 0


def judge_candidate(judge: LLMJudgeConfig) -> CandidateModel:
    """The judge as a model to deploy, filled in from the NIM catalogue where it is listed."""
    assert judge.model_name is not None  # LLMJudgeConfig requires it for 'deployed'
    entry = catalogue_entry(judge.model_name)
    nim = judge.nim
    if entry is not None:
        nim = NimSettings(
            image_name=nim.image_name or entry.image,
            image_tag=nim.image_tag or entry.tag,
            pvc_size=entry.pvc_size if "pvc_size" not in nim.model_fields_set else nim.pvc_size,
            namespace=nim.namespace,
        )
    return CandidateModel(
        name=judge.model_name,
        model_type="llm",
        context_length=judge.context_length,
        gpus=judge_gpus(judge),
        nim=nim,
        catalogue=False,
        customization_enabled=False,
    )


def models_url(url: str) -> str:
    """The ``/models`` listing of an OpenAI-compatible base URL (``…/v1`` or the server root;
    a full ``…/chat/completions`` URL is accepted too)."""
    base = url.rstrip("/").removesuffix("/chat/completions").rstrip("/")
    return f"{base}/models" if base.endswith("/v1") else f"{base}/v1/models"


def probe_remote_judge(
    judge: LLMJudgeConfig,
    *,
    timeout_s: float = PROBE_TIMEOUT_S,
    transport: httpx.BaseTransport | None = None,
) -> str:
    """Check that a remote judge answers; return what was found (for the job's state).

    Any answer but a 5xx/429 or a refused key shows the server is up (a server without a
    model listing answers 404, which is fine). A reply listing models that does not include
    ``model_name`` is reported in the message, not failed: some gateways list only a subset.

    Raises:
        PlatformUnavailable: no answer, a timeout, 429 or 5xx (the step retries it).
        PlatformError: the server refused the key (401/403): retrying cannot help.
    """
    assert judge.url is not None  # LLMJudgeConfig requires it for 'remote'
    url = models_url(judge.url)
    headers: dict[str, str] = {}
    if judge.api_key_env and os.environ.get(judge.api_key_env):
        headers["Authorization"] = f"Bearer {os.environ[judge.api_key_env]}"
    try:
        with httpx.Client(timeout=timeout_s, transport=transport) as client:
            response = client.get(url, headers=headers)
    except httpx.TransportError as exc:
        raise PlatformUnavailable(
            f"LLM judge at {judge.url} is unreachable (GET {url}: {type(exc).__name__}: {exc})"
        ) from exc
    status = response.status_code
    if status == 429 or status >= 500:
        raise PlatformUnavailable(f"LLM judge at {judge.url} answered {status} to GET {url}")
    if status in (401, 403):
        key = judge.api_key_env or "llm_judge_config.api_key_env"
        raise PlatformError(
            f"LLM judge at {judge.url} refused the request ({status} to GET {url}): set a "
            f"valid API key in the env var {key} of the workers"
        )
    if status != 200:
        return f"{judge.url} answers ({status} to GET {url})"
    try:
        listed = {str(m.get("id")) for m in response.json().get("data") or []}
    except (ValueError, AttributeError):
        listed = set()
    if listed and judge.model_name not in listed:
        return (
            f"{judge.url} answers but does not list {judge.model_name!r} "
            f"(it lists {sorted(listed)[:10]})"
        )
    return f"{judge.url} answers"


def failure_message(judge: LLMJudgeConfig, error: str) -> str:
    """The job's error when its judge could not be made ready: what, why and the fix."""
    if judge.type == "remote":
        return (
            f"LLM judge at {judge.url} is not usable: {error}; fix llm_judge_config.url (an "
            "OpenAI-compatible base URL such as https://host/v1), its api_key_env or the "
            "network path from the workers to it, or set llm_judge_config.type to 'none'"
        )
    return (
        f"LLM judge {judge.model_name!r} could not be deployed: {error}; check "
        "llm_judge_config (model_name, nim image and tag, gpus) and the platform's "
        "deployment service, or use a 'remote' judge"
    )
