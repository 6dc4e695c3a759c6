"""Model references the Evaluator takes: the judge and LLM candidate targets (§8.2, §8.3).

The judge's API key is named by ``llm_judge_config.api_key_env`` (and a candidate's by its
own ``api_key_env``) and read from the environment only while the request body is built;
it is sent to the Evaluator inside the inline config and never written to a handle.
"""

from __future__ import annotations

import os
from typing import Any

from flywheel.config.schema import CandidateModel, LLMJudgeConfig
from flywheel.errors import ConfigError


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


def llm_target(candidate: CandidateModel, model: str) -> dict[str, Any]:
    """The evaluation target for an LLM candidate: its proxy id, or its own endpoint."""
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
