"""Resolving candidates and judges to model sources, without loading anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from flywheel.config.schema import CandidateModel, LLMJudgeConfig
from flywheel.errors import ConfigError
from flywheel.platforms.local.models import (
    ModelSource,
    candidate_source,
    judge_source,
    package_dir,
    resolve_source,
)


def test_a_gguf_shipped_in_a_package_is_found_without_importing_it(
    model_packages: Path,
) -> None:
    source = resolve_source(name="smol", python_package="fake_gguf_pkg")
    assert source.kind == "hf"
    assert source.gguf_file == "Tiny.Q4_1.gguf"
    assert source.path == str(model_packages / "fake_gguf_pkg")


def test_a_package_model_directory_is_found(model_packages: Path) -> None:
    source = resolve_source(name="minilm", python_package="fake_dir_pkg")
    assert source.path == str(model_packages / "fake_dir_pkg" / "model")
    assert source.gguf_file is None


def test_missing_packages_and_files_are_config_errors(tmp_path: Path, model_packages: Path) -> None:
    with pytest.raises(ConfigError, match="not installed"):
        package_dir("no_such_model_package_xyz")
    with pytest.raises(ConfigError, match="no file"):
        resolve_source(name="x", python_package="fake_gguf_pkg", gguf_file="other.gguf")
    with pytest.raises(ConfigError, match="no file"):
        resolve_source(name="x", hf_model=str(tmp_path), gguf_file="m.gguf")
    with pytest.raises(ConfigError, match="no local source"):
        resolve_source(name="x")


def test_local_directories_and_hub_ids(tmp_path: Path) -> None:
    local = resolve_source(name="x", hf_model=str(tmp_path))
    assert local.is_local_dir
    hub = resolve_source(name="x", hf_model="HuggingFaceTB/SmolLM2-135M-Instruct")
    assert hub.path == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert not hub.is_local_dir


def test_endpoints_and_round_trip() -> None:
    candidate = CandidateModel(
        name="big", endpoint_url="http://h:8000/", endpoint_model="m", api_key_env="KEY"
    )
    source = candidate_source(candidate)
    assert source == ModelSource(
        kind="endpoint",
        name="big",
        endpoint_url="http://h:8000",
        endpoint_model="m",
        api_key_env="KEY",
    )
    assert ModelSource.from_dict(source.to_dict()) == source
    assert "KEY" in str(source.to_dict())  # the variable's name travels, never its value


def test_judge_sources(model_packages: Path) -> None:
    assert judge_source(LLMJudgeConfig()) is None
    remote = judge_source(LLMJudgeConfig(type="remote", url="http://j", model_name="judge"))
    assert remote is not None
    assert remote.kind == "endpoint"
    local = judge_source(LLMJudgeConfig(type="local", python_package="fake_gguf_pkg"))
    assert local is not None
    assert local.gguf_file is not None
    with pytest.raises(ConfigError, match="deployed"):
        judge_source(LLMJudgeConfig(type="deployed", model_name="x"))
