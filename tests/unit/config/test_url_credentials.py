"""URLs in a job configuration must not carry credentials: secrets live in the environment.

Regression: ``llm_judge_config.url = "http://user:pw@host"`` was accepted and stored, and the
job snapshot then held a masked URL that no longer authenticated.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from flywheel.config import JobConfig, load_base_config, resolve_job_config
from flywheel.config.schema import (
    CandidateModel,
    EmbeddingModelRef,
    LLMJudgeConfig,
    NotificationConfig,
)
from flywheel.domain.jobs import JobType
from flywheel.errors import ValidationFailed

_WITH_CREDENTIALS = [
    "http://user:pw@judge.example/v1",
    "https://user@judge.example",  # a bare user part is often a token
    "HTTPS://user:pw@judge.example:8443/v1",
    "//user:pw@judge.example/v1",  # scheme-relative
    "  http://user:pw@judge.example",
]

_CLEAN = [
    "http://judge.example/v1",
    "https://judge.example:8443/v1?owner=a@b.example",  # '@' after the authority is no userinfo
    "http://127.0.0.1:8000/v1#x@y",
    "http://[::1]:8000/v1",
]


def _error(exc: ValidationError) -> dict[str, Any]:
    errors = exc.errors()
    assert len(errors) == 1, errors
    return dict(errors[0])


@pytest.mark.parametrize("url", _WITH_CREDENTIALS)
def test_judge_url_with_credentials_is_a_field_error_naming_api_key_env(url: str) -> None:
    with pytest.raises(ValidationError) as info:
        LLMJudgeConfig(type="remote", model_name="judge", url=url)
    error = _error(info.value)
    assert error["loc"] == ("url",)
    assert "credentials" in error["msg"]
    assert "api_key_env" in error["msg"]


@pytest.mark.parametrize("url", _CLEAN)
def test_urls_without_credentials_are_kept_as_given(url: str) -> None:
    judge = LLMJudgeConfig(type="remote", model_name="judge", url=url, api_key_env="JUDGE_KEY")
    assert judge.url == url
    assert CandidateModel(name="m", endpoint_url=url).endpoint_url == url
    assert EmbeddingModelRef(endpoint_url=url).endpoint_url == url
    assert NotificationConfig(webhook_url=url).webhook_url == url


def test_every_url_field_of_the_job_configuration_is_checked() -> None:
    bad = "http://user:pw@host.example/v1"
    body = load_base_config()
    body["candidates"] = [*body["candidates"], {"name": "remote-llm", "endpoint_url": bad}]
    body["icl_config"]["similarity_config"] = {"embedding_model": {"endpoint_url": bad}}
    body["llm_judge_config"] = {"type": "remote", "model_name": "judge", "url": bad}
    body["notification"] = {"webhook_url": bad}
    with pytest.raises(ValidationError) as info:
        JobConfig.model_validate(body)
    where = {error["loc"]: error["msg"] for error in info.value.errors()}
    last = len(body["candidates"]) - 1
    assert set(where) == {
        ("candidates", last, "endpoint_url"),
        ("icl_config", "similarity_config", "embedding_model", "endpoint_url"),
        ("llm_judge_config", "url"),
        ("notification", "webhook_url"),
    }
    assert "api_key_env" in where[("llm_judge_config", "url")]
    # The webhook has no API key: it is signed with the secret named by secret_env.
    assert "secret_env" in where[("notification", "webhook_url")]
    assert "pw" not in "".join(where.values())


def test_resolution_reports_the_field_with_its_config_path() -> None:
    named = {"llm_judge_config": {"type": "remote", "model_name": "j", "url": "http://u:p@j/v1"}}
    with pytest.raises(ValidationFailed) as info:
        resolve_job_config(load_base_config(), job_type=JobType.llm_job, named=named)
    assert [e["loc"] for e in info.value.errors] == [["config", "llm_judge_config", "url"]]


@pytest.mark.parametrize("job_type", list(JobType))
def test_shipped_defaults_and_their_snapshot_still_validate(job_type: JobType) -> None:
    config = resolve_job_config(load_base_config(), job_type=job_type)
    # Job creation re-validates the dumped snapshot: it must pass the URL check too.
    assert JobConfig.model_validate(config.model_dump(mode="json")) == config
