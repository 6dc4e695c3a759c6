"""The job-configuration schema, the shipped defaults and layer resolution."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from flywheel.config import (
    DataSplitConfig,
    DataSplitOverrides,
    ICLConfig,
    JobConfig,
    config_hash,
    load_base_config,
    resolve_job_config,
)
from flywheel.config.resolve import deep_merge
from flywheel.domain.jobs import JobType
from flywheel.errors import ConfigError, ValidationFailed


def test_shipped_defaults_validate_and_have_both_candidate_types() -> None:
    config = JobConfig.model_validate(load_base_config())
    assert config.candidates_for(JobType.llm_job)
    assert config.candidates_for(JobType.embedding_job)


@pytest.mark.parametrize("val_ratio", [0, 1, -0.1, 1.5])
def test_val_ratio_must_be_strictly_between_zero_and_one(val_ratio: float) -> None:
    with pytest.raises(ValidationError) as info:
        DataSplitConfig(val_ratio=val_ratio)
    assert info.value.errors()[0]["loc"] == ("val_ratio",)


@pytest.mark.parametrize(
    ("val_ratio", "bound"), [(0, "greater than 0"), (-0.1, "greater than 0"), (1, "less than 1")]
)
def test_val_ratio_message_names_the_bound_it_broke(val_ratio: float, bound: str) -> None:
    # Through every way in: the schema, a request override, and the merged job configuration.
    with pytest.raises(ValidationError, match=bound):
        DataSplitConfig(val_ratio=val_ratio)
    with pytest.raises(ValidationError, match=bound):
        DataSplitOverrides(val_ratio=val_ratio)
    base = load_base_config()
    base["data_split_config"]["val_ratio"] = val_ratio
    with pytest.raises(ValidationFailed, match=f"val_ratio.*{bound}") as info:
        resolve_job_config(base, job_type=JobType.llm_job)
    [error] = info.value.errors
    assert error["loc"][-1] == "val_ratio"
    assert bound in error["msg"]


def test_min_total_records_must_exceed_eval_size() -> None:
    with pytest.raises(ValidationError, match=r"min_total_records \(20\) must exceed eval_size"):
        DataSplitConfig(eval_size=20, min_total_records=20)


@pytest.mark.parametrize("field", ["eval_size", "limit", "min_total_records"])
def test_sizes_must_be_positive(field: str) -> None:
    with pytest.raises(ValidationError) as info:
        DataSplitConfig.model_validate({field: 0})
    assert field in str(info.value)


def test_icl_example_bounds_and_reserved_tokens() -> None:
    with pytest.raises(ValidationError, match="min_examples"):
        ICLConfig(min_examples=4, max_examples=3)
    with pytest.raises(ValidationError, match="reserved_tokens"):
        ICLConfig(max_context_length=1000, reserved_tokens=1000)


def test_unknown_fields_are_rejected_so_typos_are_not_ignored() -> None:
    base = load_base_config()
    with pytest.raises(ValidationFailed) as info:
        resolve_job_config(
            deep_merge(base, {"training_config": {"epoch": 3}}), job_type=JobType.llm_job
        )
    assert info.value.errors[0]["loc"] == ["config", "training_config", "epoch"]


def test_secrets_cannot_be_put_in_the_config_only_env_references() -> None:
    base = load_base_config()
    named = {
        "llm_judge_config": {
            "type": "remote",
            "url": "http://j",
            "model_name": "m",
            "api_key": "sk-123",
        }
    }
    with pytest.raises(ValidationFailed) as info:
        resolve_job_config(base, job_type=JobType.llm_job, named=named)
    assert "api_key" in str(info.value.errors)
    ok = {
        "llm_judge_config": {
            "type": "remote",
            "url": "http://j",
            "model_name": "m",
            "api_key_env": "JUDGE_API_KEY",
        }
    }
    resolved = resolve_job_config(base, job_type=JobType.llm_job, named=ok)
    assert resolved.llm_judge_config.api_key_env == "JUDGE_API_KEY"


def test_layers_merge_in_order_and_lists_replace_whole() -> None:
    base = load_base_config()
    named = {
        "candidates": [{"name": "tiny", "model_type": "llm", "context_length": 2048}],
        "data_split_config": {"eval_size": 30, "min_total_records": 100},
    }
    config = resolve_job_config(
        base,
        job_type=JobType.llm_job,
        named=named,
        overrides=DataSplitOverrides(eval_size=40, random_seed=7),
    )
    assert [c.name for c in config.candidates] == ["tiny"]
    split = config.data_split_config
    assert (split.eval_size, split.min_total_records, split.random_seed) == (40, 100, 7)
    assert split.val_ratio == base["data_split_config"]["val_ratio"]


def test_unset_override_fields_do_not_reset_named_values() -> None:
    base = load_base_config()
    named = {"data_split_config": {"random_seed": 99}}
    config = resolve_job_config(
        base, job_type=JobType.llm_job, named=named, overrides=DataSplitOverrides(limit=500)
    )
    assert config.data_split_config.random_seed == 99
    assert config.data_split_config.limit == 500


def test_job_type_without_candidate_is_rejected() -> None:
    base = load_base_config()
    named = {"candidates": [{"name": "tiny", "model_type": "llm"}]}
    with pytest.raises(ValidationFailed, match="no candidate with model_type 'embedding'"):
        resolve_job_config(base, job_type=JobType.embedding_job, named=named)


def test_duplicate_candidate_names_are_rejected() -> None:
    with pytest.raises(ValidationError, match="duplicate names"):
        JobConfig(candidates=[{"name": "a"}, {"name": "a"}])  # type: ignore[list-item]


def test_candidate_cannot_be_both_in_process_and_endpoint() -> None:
    with pytest.raises(ValidationError, match="either hf_model"):
        JobConfig(candidates=[{"name": "a", "hf_model": "x", "endpoint_url": "http://e"}])  # type: ignore[list-item]


def test_config_hash_is_stable_and_content_sensitive() -> None:
    base = load_base_config()
    one = resolve_job_config(base, job_type=JobType.llm_job)
    two = resolve_job_config(base, job_type=JobType.llm_job)
    three = resolve_job_config(
        base, job_type=JobType.llm_job, overrides=DataSplitOverrides(random_seed=1)
    )
    assert config_hash(one) == config_hash(two) != config_hash(three)


def test_deployment_file_overrides_shipped_defaults(tmp_path: Path) -> None:
    path = tmp_path / "flywheel.yaml"
    path.write_text("data_split_config:\n  eval_size: 25\n  min_total_records: 60\n")
    base = load_base_config(path)
    assert base["data_split_config"]["eval_size"] == 25
    assert base["icl_config"]["max_examples"] == 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1, 2]", "must be a mapping"),
        ("a: [", "not valid YAML"),
        ("data_split_config:\n  val_ratio: 2\n", "val_ratio"),
    ],
)
def test_bad_deployment_file_fails_with_the_reason(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "flywheel.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_base_config(path)


def test_missing_deployment_file_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="FLYWHEEL_CONFIG"):
        load_base_config(tmp_path / "absent.yaml")
