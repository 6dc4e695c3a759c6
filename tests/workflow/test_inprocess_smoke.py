"""Whole jobs driven step by step in this process (no broker): the engine and steps agree."""

from __future__ import annotations

from pathlib import Path

from flywheel.domain.jobs import JobStatus, JobType
from flywheel.stores.base import LogStore, StateStore
from flywheel.stores.registry import open_state_store
from flywheel.workflow.steps import StepRunner
from tests.workflow.fake_platform import FakePlatform
from tests.workflow.support import create_job, drive, embedding_config, llm_config, make_services


def test_llm_job_completes(runner: StepRunner, state: StateStore, platform: FakePlatform) -> None:
    platform.set_script(accuracy={"small": 1.0, "tiny": 0.5})
    job = create_job(state, llm_config(["small", "tiny"]))
    done = drive(runner, job.id)
    assert done.status is JobStatus.completed, done.error
    runs = {r.name: r for r in state.list_candidate_runs(job.id)}
    assert runs["small"].status == "completed"
    assert {e["eval_type"] for e in runs["small"].evaluations} == {"base", "icl", "customized"}
    assert done.recommendation is not None
    assert done.recommendation["best"] is not None
    assert platform.live() == []


def test_embedding_job_completes(
    runner: StepRunner, state: StateStore, platform: FakePlatform
) -> None:
    job = create_job(state, embedding_config(["embedder"]), job_type=JobType.embedding_job)
    done = drive(runner, job.id)
    assert done.status is JobStatus.completed, done.error
    assert done.recommendation is not None
    assert done.recommendation["best"] in {"embedder/base", "embedder/customized"}


def test_llm_job_on_the_mongodb_state_store(
    mongo_db_url: str, logs: LogStore, platform: FakePlatform, data_dir: Path
) -> None:
    state = open_state_store(mongo_db_url)
    try:
        runner = StepRunner(
            make_services(state=state, logs=logs, platform=platform, data_dir=data_dir)
        )
        # Candidate names with dots and slashes become keys of the persisted state.
        job = create_job(state, llm_config(["meta/llama-3.2-1b", "qwen2.5:0.5b"]))
        done = drive(runner, job.id)
        assert done.status is JobStatus.completed, done.error
        runs = {r.name: r.status for r in state.list_candidate_runs(job.id)}
        assert runs == {"meta/llama-3.2-1b": "completed", "qwen2.5:0.5b": "completed"}
        assert platform.live() == []
    finally:
        state.close()
