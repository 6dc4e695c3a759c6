"""LocalPlatform bookkeeping with stand-in workers (no torch): specs, slots, kills, failures."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from flywheel.config.schema import CandidateModel, JobConfig, LLMJudgeConfig
from flywheel.errors import ConfigError, PlatformError
from flywheel.platforms.base import DatasetFiles, Handle, WorkState
from flywheel.platforms.local import LocalPlatform
from flywheel.platforms.local.jobfiles import WorkDir, read_json
from flywheel.platforms.local.processes import WorkerPool


def _fake_python(tmp_path: Path, body: str) -> str:
    """An executable standing in for ``python -m flywheel.platforms.local.runner DIR``."""
    script = tmp_path / "fake-python"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return str(script)


@pytest.fixture
def files(tmp_path: Path) -> DatasetFiles:
    root = tmp_path / "ds"
    root.mkdir()
    for name in ("eval.jsonl", "icl-a.jsonl", "train.jsonl"):
        (root / name).write_text("{}\n")
    return DatasetFiles(
        root=root,
        eval=root / "eval.jsonl",
        icl_eval={"a": root / "icl-a.jsonl"},
        train=root / "train.jsonl",
    )


def _platform(tmp_path: Path, body: str, *, cancel_grace_s: float = 10.0) -> LocalPlatform:
    platform = LocalPlatform(tmp_path / "data", torch_threads=1, cancel_grace_s=cancel_grace_s)
    platform.pool = WorkerPool(
        slots_dir=platform.data_dir / "jobs" / ".training-slots",
        python=_fake_python(tmp_path, body),
    )
    return platform


def _spec(handle: Handle) -> dict[str, object]:
    spec = read_json(WorkDir(Path(handle["work_dir"])).spec)
    assert isinstance(spec, dict)
    return spec


def test_evaluation_specs_pick_the_right_files_and_adapter(
    tmp_path: Path, files: DatasetFiles
) -> None:
    platform = _platform(tmp_path, "exit 0")
    candidate = CandidateModel(name="a", hf_model=str(tmp_path))
    config = JobConfig(candidates=[candidate])
    datasets = platform.upload_datasets(job_id="j", files=files)
    assert orjson.loads(orjson.dumps(datasets)) == datasets  # handles are JSON

    icl = platform.start_evaluation(
        job_id="j", candidate=candidate, eval_type="icl", datasets=datasets, config=config
    )
    assert _spec(icl)["eval_file"] == str(files.root / "icl-a.jsonl")
    assert _spec(icl)["judge"] is None
    assert _spec(icl)["torch_threads"] == 1

    custom = platform.start_evaluation(
        job_id="j",
        candidate=candidate,
        eval_type="customized",
        datasets=datasets,
        config=config,
        customization={"output_model": "/adapters/a"},
    )
    assert _spec(custom)["adapter_dir"] == "/adapters/a"
    assert _spec(custom)["eval_file"] == str(files.eval)

    with pytest.raises(PlatformError, match="adapter"):
        platform.start_evaluation(
            job_id="j2",
            candidate=candidate,
            eval_type="customized",
            datasets=datasets,
            config=config,
        )
    other = CandidateModel(name="b", hf_model=str(tmp_path))
    with pytest.raises(PlatformError, match="no icl eval file"):
        platform.start_evaluation(
            job_id="j", candidate=other, eval_type="icl", datasets=datasets, config=config
        )
    deployed_judge = config.model_copy(
        update={"llm_judge_config": LLMJudgeConfig(type="deployed", model_name="x")}
    )
    with pytest.raises(ConfigError, match="deployed"):
        platform.start_evaluation(
            job_id="j",
            candidate=candidate,
            eval_type="base",
            datasets=datasets,
            config=deployed_judge,
        )


def test_endpoints_cannot_be_fine_tuned(tmp_path: Path, files: DatasetFiles) -> None:
    platform = _platform(tmp_path, "exit 0")
    candidate = CandidateModel(name="e", endpoint_url="http://127.0.0.1:9")
    datasets = platform.upload_datasets(job_id="j", files=files)
    with pytest.raises(PlatformError, match="endpoint"):
        platform.start_customization(
            job_id="j",
            candidate=candidate,
            datasets=datasets,
            config=JobConfig(candidates=[candidate]),
        )


def test_training_slots_queue_work_and_cancel_kills_after_the_grace(
    tmp_path: Path, files: DatasetFiles
) -> None:
    platform = _platform(tmp_path, "exec sleep 60", cancel_grace_s=0.2)
    first = CandidateModel(name="a", hf_model=str(tmp_path))
    second = CandidateModel(name="b", hf_model=str(tmp_path))
    config = JobConfig(candidates=[first, second])
    datasets = platform.upload_datasets(job_id="j", files=files)

    a = platform.start_customization(job_id="j", candidate=first, datasets=datasets, config=config)
    b = platform.start_customization(job_id="j", candidate=second, datasets=datasets, config=config)
    assert platform.poll_customization(a).state is WorkState.pending  # launched, not reporting
    assert platform.pool.alive(WorkDir(Path(a["work_dir"])))
    assert platform.poll_customization(b).message == "waiting for a training slot"
    assert platform.pool.pid(WorkDir(Path(b["work_dir"]))) is None

    platform.cancel_customization(b)  # queued work is cancelled at once
    assert platform.poll_customization(b).state is WorkState.cancelled

    platform.cancel_customization(a)  # this worker ignores the flag
    time.sleep(0.3)
    assert platform.poll_customization(a).state is WorkState.cancelled
    assert not platform.pool.alive(WorkDir(Path(a["work_dir"])))

    again = platform.start_customization(
        job_id="j", candidate=first, datasets=datasets, config=config
    )  # cancelled work restarts on a new start
    assert platform.pool.alive(WorkDir(Path(again["work_dir"])))
    platform.delete_customization(again)
    assert not Path(again["work_dir"]).exists()


def test_a_worker_that_dies_fails_with_its_last_words(tmp_path: Path, files: DatasetFiles) -> None:
    platform = _platform(tmp_path, "echo 'CUDA out of memory' >&2; exit 3")
    candidate = CandidateModel(name="a", hf_model=str(tmp_path))
    datasets = platform.upload_datasets(job_id="j", files=files)
    handle = platform.start_evaluation(
        job_id="j",
        candidate=candidate,
        eval_type="base",
        datasets=datasets,
        config=JobConfig(candidates=[candidate]),
    )
    platform.pool.wait(WorkDir(Path(handle["work_dir"])), 10)
    progress = platform.poll_evaluation(handle)
    assert progress.state is WorkState.failed
    assert "CUDA out of memory" in (progress.message or "")
    with pytest.raises(PlatformError, match="no result"):
        platform.evaluation_outcome(handle)
    platform.cancel_evaluation(handle)  # terminal: nothing to do
    platform.delete_evaluation(handle)
    platform.delete_evaluation(handle)  # idempotent


def test_training_may_get_more_threads_than_evaluations(
    tmp_path: Path, files: DatasetFiles
) -> None:
    platform = _platform(tmp_path, 'echo "$OMP_NUM_THREADS" > "$3/omp"; exec sleep 60')
    platform.training_threads = 2
    candidate = CandidateModel(name="a", hf_model=str(tmp_path))
    config = JobConfig(candidates=[candidate])
    datasets = platform.upload_datasets(job_id="j", files=files)

    evaluation = platform.start_evaluation(
        job_id="j", candidate=candidate, eval_type="base", datasets=datasets, config=config
    )
    training = platform.start_customization(
        job_id="j", candidate=candidate, datasets=datasets, config=config
    )
    platform.poll_customization(training)  # takes the training slot and launches
    assert _spec(evaluation)["torch_threads"] == 1
    assert _spec(training)["torch_threads"] == 2
    for handle, threads in ((evaluation, "1"), (training, "2")):
        marker = Path(handle["work_dir"]) / "omp"
        deadline = time.monotonic() + 10
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.read_text().strip() == threads
    platform.cancel_evaluation(evaluation)
    platform.cancel_customization(training)
    platform.delete_evaluation(evaluation)
    platform.delete_customization(training)
