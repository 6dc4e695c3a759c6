"""The NIM catalogue: loading it, and candidates inheriting its settings at resolution."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from flywheel.config import JobConfig, load_base_config, resolve_job_config
from flywheel.config.nim_catalogue import catalogue_entry, load_catalogue
from flywheel.domain.jobs import JobType
from flywheel.errors import ValidationFailed

LLM = "meta/llama-3.2-1b-instruct"
BIG = "meta/llama-3.3-70b-instruct"
NO_CUSTOMIZER = "nvidia/nemotron-mini-4b-instruct"
EMBEDDER = "nvidia/llama-3.2-nv-embedqa-1b-v2"


def _resolve(*candidates: dict[str, Any], job_type: JobType = JobType.llm_job) -> JobConfig:
    return resolve_job_config(
        load_base_config(), job_type=job_type, named={"candidates": list(candidates)}
    )


def test_catalogue_loads_from_the_config_package() -> None:
    catalogue = load_catalogue()
    assert len(catalogue) >= 20
    assert {entry.kind for entry in catalogue.values()} == {"llm", "judge", "embedding"}
    entry = catalogue_entry(LLM)
    assert entry is not None
    assert entry.customization_target == "meta/llama-3.2-1b-instruct@2.0"
    assert catalogue_entry("acme/unknown") is None


def test_nmp_platform_reexports_the_same_catalogue() -> None:
    from flywheel.platforms import nemo

    assert nemo.load_catalogue is load_catalogue
    assert nemo.catalogue_entry(LLM) is catalogue_entry(LLM)


def test_config_resolution_does_not_import_a_platform() -> None:
    code = (
        "import sys\n"
        "from flywheel.config import load_base_config, resolve_job_config\n"
        "from flywheel.domain.jobs import JobType\n"
        f"resolve_job_config(load_base_config(), job_type=JobType.llm_job, "
        f"named={{'candidates': [{{'name': {LLM!r}}}]}})\n"
        "loaded = [m for m in sys.modules if m.startswith('flywheel.platforms')]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_catalogued_name_inherits_unset_settings() -> None:
    (candidate,) = _resolve({"name": BIG}).candidates
    entry = catalogue_entry(BIG)
    assert entry is not None
    assert candidate.nim.image_name == entry.image
    assert candidate.nim.image_tag == entry.tag
    assert candidate.nim.pvc_size == "200Gi"
    assert candidate.nim.customization_target == "meta/llama-3.3-70b-instruct@2.0"
    assert candidate.context_length == 32768
    assert candidate.gpus == 4
    assert candidate.model_type == "llm"
    assert candidate.customization_enabled is True
    assert candidate.nim.namespace == "dfwbp"  # not a catalogue setting


def test_explicit_settings_win_even_when_they_equal_the_default() -> None:
    (candidate,) = _resolve(
        {
            "name": BIG,
            "gpus": 1,  # the schema default, written out: still wins over the entry's 4
            "context_length": 4096,
            "nim": {"image_tag": "9.9.9", "pvc_size": "25Gi", "customization_target": "x/y@1"},
        }
    ).candidates
    assert candidate.gpus == 1
    assert candidate.context_length == 4096
    assert candidate.nim.image_tag == "9.9.9"
    assert candidate.nim.pvc_size == "25Gi"
    assert candidate.nim.customization_target == "x/y@1"
    assert candidate.nim.image_name == "nvcr.io/nim/meta/llama-3.3-70b-instruct"  # unset: inherited


def test_a_model_nmp_cannot_fine_tune_skips_customization_unless_told() -> None:
    (skipped,) = _resolve({"name": NO_CUSTOMIZER}).candidates
    assert skipped.customization_enabled is False
    assert skipped.nim.customization_target is None
    (forced,) = _resolve({"name": NO_CUSTOMIZER, "customization_enabled": True}).candidates
    assert forced.customization_enabled is True


def test_an_embedding_entry_makes_an_embedding_candidate() -> None:
    config = _resolve({"name": EMBEDDER}, job_type=JobType.embedding_job)
    (candidate,) = config.candidates_for(JobType.embedding_job)
    assert candidate.model_type == "embedding"
    assert candidate.nim.customization_target == "nvidia/llama-3.2-nv-embedqa-1b@v2"


def test_a_contradicting_model_type_is_an_error() -> None:
    with pytest.raises(ValidationFailed) as info:
        _resolve({"name": EMBEDDER, "model_type": "llm"})
    assert info.value.errors[0]["loc"] == ["config", "candidates", 0, "catalogue"]
    assert "embedding" in info.value.errors[0]["msg"]


def test_local_sources_do_not_inherit_unless_asked() -> None:
    local = {"name": LLM, "hf_model": "some/dir", "context_length": 2048}
    (candidate,) = _resolve(local).candidates
    assert candidate.nim.image_tag is None
    assert candidate.gpus == 1  # the schema default, not the entry's
    (asked,) = _resolve({**local, "catalogue": True}).candidates
    assert asked.nim.image_tag == "1.8.3"
    assert asked.context_length == 2048  # explicit still wins


def test_catalogue_false_opts_out() -> None:
    (candidate,) = _resolve({"name": BIG, "catalogue": False}).candidates
    assert candidate.nim.image_name is None
    assert candidate.gpus == 1
    assert candidate.catalogue is False


def test_catalogue_true_requires_an_entry() -> None:
    with pytest.raises(ValidationFailed, match="no model named 'acme/tiny-1b'") as info:
        _resolve({"name": "acme/tiny-1b", "catalogue": True})
    assert info.value.errors[0]["loc"] == ["config", "candidates", 0, "catalogue"]


def test_unknown_names_are_left_alone() -> None:
    (candidate,) = _resolve({"name": "acme/tiny-1b"}).candidates
    assert candidate.nim.image_name is None
    assert candidate.nim.pvc_size == "25Gi"


def test_resolution_is_idempotent_on_the_snapshot() -> None:
    first = _resolve({"name": BIG})
    again = resolve_job_config({}, job_type=JobType.llm_job, named=first.model_dump(mode="json"))
    assert again == first
