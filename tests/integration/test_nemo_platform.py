"""The NMP platform adapter driven through the SDK against the contract-faithful fake NMP."""

from __future__ import annotations

import io
import json
import math
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from tests.fake_nmp import FakeNMP, FakeNMPServer, run_fake_nmp

from flywheel.config.schema import CandidateModel, JobConfig, LLMJudgeConfig, NimSettings
from flywheel.domain.metrics import evaluate_tool_calls
from flywheel.errors import ConfigError, PlatformError, PlatformUnavailable
from flywheel.platforms.base import DatasetFiles, Handle, Progress, WorkState
from flywheel.platforms.nemo import NemoPlatform, RetryPolicy, load_catalogue
from flywheel.platforms.nemo.payloads import find_score
from flywheel.platforms.nemo.results import parse_archive
from flywheel.workflow.scoring import read_qrels, read_references, score_retrieval_eval

LLM = "meta/llama-3.2-1b-instruct"
EMBEDDER = "nvidia/llama-3.2-nv-embedqa-1b-v2"
JUDGE_KEY = "sk-judge-very-secret-4711"
FAST_RETRY = RetryPolicy(attempts=3, initial_wait_s=0.01, max_wait_s=0.05)


@pytest.fixture
def fake() -> Iterator[FakeNMPServer]:
    with run_fake_nmp(FakeNMP()) as server:
        yield server


def _platform(fake: FakeNMPServer, **kwargs: object) -> NemoPlatform:
    options: dict[str, object] = {"retry": FAST_RETRY, "timeout_s": 5.0, **kwargs}
    return NemoPlatform(
        base_url=fake.base_url,
        datastore_url=fake.datastore_url,
        nim_url=fake.nim_url,
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture
def platform(fake: FakeNMPServer) -> Iterator[NemoPlatform]:
    nemo = _platform(fake)
    yield nemo
    nemo.close()


def _write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _tool_row(city: str) -> dict[str, object]:
    call = {
        "type": "function",
        "function": {"name": "weather", "arguments": f'{{"city": "{city}"}}'},
    }
    tool = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
    return {
        "request": {
            "messages": [{"role": "user", "content": f"Weather in {city}?"}],
            "tools": [tool],
        },
        "response": {
            "choices": [{"message": {"role": "assistant", "content": "", "tool_calls": [call]}}]
        },
    }


@pytest.fixture
def llm_files(tmp_path: Path) -> DatasetFiles:
    sft = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    return DatasetFiles(
        root=tmp_path,
        eval=_write_jsonl(tmp_path / "eval.jsonl", [_tool_row("Oslo"), _tool_row("Rome")]),
        icl_eval={LLM: _write_jsonl(tmp_path / "icl.jsonl", [_tool_row("Oslo")])},
        train=_write_jsonl(tmp_path / "train.jsonl", [sft] * 3),
        validation=_write_jsonl(tmp_path / "val.jsonl", [sft]),
    )


@pytest.fixture
def beir_files(tmp_path: Path) -> DatasetFiles:
    beir = tmp_path / "beir"
    _write_jsonl(beir / "corpus.jsonl", [{"_id": "d1", "text": "doc"}])
    _write_jsonl(beir / "queries.jsonl", [{"_id": "q1", "text": "query"}])
    (beir / "qrels").mkdir()
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    train = _write_jsonl(tmp_path / "train.jsonl", [{"query": "q", "pos_doc": "p", "neg_doc": []}])
    return DatasetFiles(root=tmp_path, train=train, beir_dir=beir)


def _candidate(name: str = LLM, **kwargs: object) -> CandidateModel:
    return CandidateModel.model_validate({"name": name, **kwargs})


def _config(candidate: CandidateModel, judge: LLMJudgeConfig | None = None) -> JobConfig:
    return JobConfig(candidates=[candidate], llm_judge_config=judge or LLMJudgeConfig())


def _poll_until_terminal(poll: Callable[[Handle], Progress], handle: Handle) -> list[Progress]:
    seen: list[Progress] = []
    for _ in range(40):
        seen.append(poll(handle))
        if seen[-1].state.terminal:
            return seen
    raise AssertionError(f"never terminal: {seen[-1]}")


# -- datasets -----------------------------------------------------------------------------


def test_datasets_upload_registers_and_delete_removes(
    fake: FakeNMPServer,
    platform: NemoPlatform,
    llm_files: DatasetFiles,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # must not block uploads to the Data Store
    handle = platform.upload_datasets(job_id="job-1", files=llm_files)
    state = fake.state
    ns = handle["namespace"]
    assert ns in state.namespaces
    assert ns in state.ds_namespaces
    train_repo = f"{ns}/{handle['train_dataset']}"
    assert set(state.repos[train_repo]) == {"training/train.jsonl", "validation/val.jsonl"}
    assert state.datasets[train_repo]["files_url"] == f"hf://datasets/{train_repo}"
    assert handle["workload"] == "tool_calling"
    assert handle["eval_files"]["base"].endswith("/eval_data.jsonl")
    eval_repo = handle["eval_files"]["base"].removeprefix("hf://datasets/").rsplit("/", 1)[0]
    assert state.repos[eval_repo]["eval_data.jsonl"] == llm_files.eval.read_bytes()  # type: ignore[union-attr]
    assert LLM in handle["icl_files"]

    again = platform.upload_datasets(job_id="job-1", files=llm_files)  # retry: PATCH, no dup
    assert again["repos"] == handle["repos"]
    assert state.entries("updated", "dataset")

    platform.delete_datasets(handle)
    assert not state.repos
    assert not state.datasets
    assert {e.key for e in state.entries("deleted", "repo")} == set(handle["repos"])
    platform.delete_datasets(handle)  # idempotent


# -- deployments --------------------------------------------------------------------------


def test_deployment_becomes_ready_once_listed_and_shutdown_deletes_it(
    fake: FakeNMPServer, platform: NemoPlatform
) -> None:
    handle = platform.start_deployment(job_id="job-1", candidate=_candidate())
    assert handle["owned"] is True
    seen = _poll_until_terminal(platform.poll_deployment, handle)
    assert seen[-1].state is WorkState.ready
    assert seen[0].state is WorkState.pending
    assert LLM in fake.state.served
    body = next(b for m, p, b in fake.state.bodies if p.endswith("model-deployments"))
    assert body["config"]["nim_deployment"]["image_tag"] == "1.8.3"  # from the catalogue
    assert body["name"] == "meta-llama-3.2-1b-instruct"

    platform.shutdown_deployment(handle)
    platform.shutdown_deployment(handle)  # idempotent
    assert len(fake.state.entries("deleted", "model_deployment")) == 1
    assert LLM not in fake.state.served


def test_deployment_failure_reports_the_platform_message(
    fake: FakeNMPServer, platform: NemoPlatform
) -> None:
    fake.state.fail_next_deployment("ImagePullBackOff: nvcr.io/nim/x not found")
    handle = platform.start_deployment(job_id="job-1", candidate=_candidate())
    final = _poll_until_terminal(platform.poll_deployment, handle)[-1]
    assert final.state is WorkState.failed
    assert "ImagePullBackOff" in (final.message or "")
    assert "Deployment Management" in (final.message or "")


@pytest.mark.parametrize("duplicate_as_500", [False, True])
def test_duplicate_deployment_is_reused_and_never_shut_down(
    fake: FakeNMPServer, platform: NemoPlatform, duplicate_as_500: bool
) -> None:
    config = {"model": LLM, "nim_deployment": {"image_name": "i", "image_tag": "t", "gpu": 1}}
    created = httpx.post(
        f"{fake.base_url}/v1/deployment/model-deployments",
        json={"name": "meta-llama-3.2-1b-instruct", "namespace": "dfwbp", "config": config},
    )
    assert created.status_code == 200
    fake.state.dms_duplicate_as_500 = duplicate_as_500
    # Our existence check misses it (a race), so the create itself hits the duplicate.
    fake.state.inject(host="N", method="GET", path="/model-deployments/", status=404, times=1)
    handle = platform.start_deployment(job_id="job-1", candidate=_candidate())
    assert handle["owned"] is False
    platform.shutdown_deployment(handle)
    assert not fake.state.entries("deleted", "model_deployment")


def test_model_already_served_needs_no_deployment(
    fake: FakeNMPServer, platform: NemoPlatform
) -> None:
    fake.state.served[LLM] = 0
    handle = platform.start_deployment(job_id="job-1", candidate=_candidate())
    assert handle == {"kind": "served", "model": LLM, "owned": False}
    assert platform.poll_deployment(handle).state is WorkState.ready
    platform.shutdown_deployment(handle)
    assert not fake.state.entries("created", "model_deployment")
    assert not fake.state.entries("deleted", "model_deployment")


# -- customization ------------------------------------------------------------------------


def test_customization_reports_progress_and_completes_once_the_adapter_is_served(
    fake: FakeNMPServer, platform: NemoPlatform, llm_files: DatasetFiles
) -> None:
    candidate = _candidate()
    datasets = platform.upload_datasets(job_id="job-1", files=llm_files)
    handle = platform.start_customization(
        job_id="job-1", candidate=candidate, datasets=datasets, config=_config(candidate)
    )
    job_id = handle["job_id"]
    assert job_id.startswith("cust-")
    assert handle["output_model"] == f"{handle['requested_output_model']}@{job_id}"
    body = next(b for m, p, b in fake.state.bodies if p == "/v1/customization/jobs")
    assert body["hyperparameters"]["lora"]["adapter_dim"] == 32
    assert body["hyperparameters"]["epochs"] == 2
    assert body["dataset"] == {"name": datasets["train_dataset"], "namespace": "dfwbp"}
    config_body = next(b for m, p, b in fake.state.bodies if p == "/v1/customization/configs")
    assert config_body["target"] == "meta/llama-3.2-1b-instruct@2.0"

    seen = _poll_until_terminal(platform.poll_customization, handle)
    final = seen[-1]
    assert final.state is WorkState.completed
    percents = [p.percent for p in seen if p.percent is not None]
    assert percents == sorted(percents)
    assert percents[-1] == 100.0
    assert any(p.details.get("loss") is not None for p in seen)
    assert final.details["epoch"] == 2
    assert final.details["output_model"] == handle["output_model"]
    assert handle["output_model"] in fake.state.served

    second = platform.start_customization(
        job_id="job-1", candidate=candidate, datasets=datasets, config=_config(candidate)
    )
    assert second["requested_output_model"] != handle["requested_output_model"]  # run-unique

    platform.delete_customization(handle)
    platform.delete_customization(handle)  # idempotent
    assert handle["output_model"] not in fake.state.models
    assert fake.state.entries("deleted", "customization_config")


def test_customization_failure_carries_the_status_log_detail(
    fake: FakeNMPServer, platform: NemoPlatform, llm_files: DatasetFiles
) -> None:
    candidate = _candidate()
    fake.state.fail_next_customization(at_percent=40.0, detail="CUDA out of memory on rank 0")
    datasets = platform.upload_datasets(job_id="job-1", files=llm_files)
    handle = platform.start_customization(
        job_id="job-1", candidate=candidate, datasets=datasets, config=_config(candidate)
    )
    final = _poll_until_terminal(platform.poll_customization, handle)[-1]
    assert final.state is WorkState.failed
    assert final.percent == 40.0
    assert "CUDA out of memory on rank 0" in (final.message or "")
    assert "Customizer" in (final.message or "")


def test_customization_cancel_uses_the_documented_path(
    fake: FakeNMPServer, platform: NemoPlatform, llm_files: DatasetFiles
) -> None:
    candidate = _candidate()
    datasets = platform.upload_datasets(job_id="job-1", files=llm_files)
    handle = platform.start_customization(
        job_id="job-1", candidate=candidate, datasets=datasets, config=_config(candidate)
    )
    platform.poll_customization(handle)
    platform.cancel_customization(handle)
    cancelled = fake.state.entries("cancelled", "customization_job")
    assert [(e.key, e.path) for e in cancelled] == [
        (handle["job_id"], f"/v1/customization/jobs/{handle['job_id']}/cancel")
    ]
    final = _poll_until_terminal(platform.poll_customization, handle)[-1]
    assert final.state is WorkState.cancelled
    platform.cancel_customization(handle)  # already cancelled: no second request
    assert len(fake.state.entries("cancelled", "customization_job")) == 1


def test_a_racing_second_cancel_is_success_not_an_error(
    fake: FakeNMPServer, platform: NemoPlatform, llm_files: DatasetFiles
) -> None:
    # Two workflow steps may both see "running" and both cancel; NMP refuses the second.
    candidate = _candidate()
    datasets = platform.upload_datasets(job_id="job-1", files=llm_files)
    config = _config(candidate)
    customization = platform.start_customization(
        job_id="job-1", candidate=candidate, datasets=datasets, config=config
    )
    evaluation = platform.start_evaluation(
        job_id="job-1", candidate=candidate, eval_type="base", datasets=datasets, config=config
    )
    platform.cancel_customization(customization)
    platform.cancel_evaluation(evaluation)
    fake.state.hold("customization", "cancelling")  # NMP takes its time to stop them
    fake.state.hold("evaluation", "cancelling")
    cust, ev = customization["job_id"], evaluation["job_id"]
    refused = httpx.post(f"{fake.base_url}/v1/customization/jobs/{cust}/cancel")
    assert refused.status_code == 400  # what a racing second cancel gets
    platform.cancel_customization(customization)  # sees "cancelling": nothing to do
    platform.cancel_evaluation(evaluation)
    assert fake.state.customization_jobs[cust].record["status"] == "cancelling"
    assert fake.state.evaluation_jobs[ev].record["status"] == "cancelling"
    assert len(fake.state.entries("cancelled", "customization_job")) == 1
    assert len(fake.state.entries("cancelled", "evaluation_job")) == 1


# -- evaluation ---------------------------------------------------------------------------


def _remote_judge() -> LLMJudgeConfig:
    return LLMJudgeConfig(
        type="remote",
        url="https://judge.example/v1",
        model_name="judge-70b",
        api_key_env="JUDGE_KEY",
    )


def test_tool_calling_evaluation_scores_and_keeps_the_key_out_of_handles(
    fake: FakeNMPServer,
    platform: NemoPlatform,
    llm_files: DatasetFiles,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JUDGE_KEY", JUDGE_KEY)
    fake.state.served[LLM] = 0
    candidate = _candidate()
    config = _config(candidate, _remote_judge())
    datasets = platform.upload_datasets(job_id="job-1", files=llm_files)
    deployment = platform.start_deployment(job_id="job-1", candidate=candidate)
    handles = [
        platform.start_evaluation(
            job_id="job-1",
            candidate=candidate,
            eval_type=eval_type,
            datasets=datasets,
            config=config,
            deployment=deployment,
        )
        for eval_type in ("base", "icl")
    ]
    for handle in [datasets, deployment, *handles]:
        assert JUDGE_KEY not in json.dumps(handle)
    sent = next(b for m, p, b in fake.state.bodies if p == "/v1/evaluation/jobs")
    assert JUDGE_KEY in json.dumps(sent)  # resolved only into the request body
    task = sent["config"]["tasks"]["custom-tool-calling"]
    assert set(task["metrics"]) == {"tool-calling-accuracy", "correctness"}
    assert sent["target"] == {"type": "model", "model": LLM}

    handle = handles[0]
    seen = _poll_until_terminal(platform.poll_evaluation, handle)
    assert seen[-1].state is WorkState.completed
    assert any(p.state is WorkState.running and p.percent == 50.0 for p in seen)
    outcome = platform.evaluation_outcome(handle)
    assert outcome.platform_scores == pytest.approx(
        {
            "function_name_accuracy": 0.8,
            "function_name_and_args_accuracy": 0.6,
            "judge_tool_call_correctness": 1.0,  # the correctness judge: 0/1 per item
        }
    )
    assert outcome.artifacts["evaluation_job"] == handle["job_id"]

    platform.delete_evaluation(handle)
    platform.delete_evaluation(handle)  # idempotent
    assert fake.state.requested("DELETE", f"/v1/evaluation/jobs/{handle['job_id']}")
    assert len(fake.state.entries("deleted", "evaluation_job")) == 1


def test_generic_workload_without_a_judge_is_a_config_error(
    fake: FakeNMPServer, platform: NemoPlatform, tmp_path: Path
) -> None:
    row = {
        "request": {"messages": [{"role": "user", "content": "hi"}]},
        "response": {"choices": [{"message": {"role": "assistant", "content": "hello"}}]},
    }
    files = DatasetFiles(root=tmp_path, eval=_write_jsonl(tmp_path / "e.jsonl", [row]))
    datasets = platform.upload_datasets(job_id="job-2", files=files)
    assert datasets["workload"] == "generic"
    candidate = _candidate()
    with pytest.raises(ConfigError, match="judge"):
        platform.start_evaluation(
            job_id="job-2",
            candidate=candidate,
            eval_type="base",
            datasets=datasets,
            config=_config(candidate),
        )
    judged = _config(candidate, LLMJudgeConfig(type="deployed", model_name="judge-70b"))
    handle = platform.start_evaluation(
        job_id="job-2", candidate=candidate, eval_type="base", datasets=datasets, config=judged
    )
    _poll_until_terminal(platform.poll_evaluation, handle)
    assert platform.evaluation_outcome(handle).platform_scores == pytest.approx(
        {"judge_similarity": 6 / 9}
    )
    sent = [b for m, p, b in fake.state.bodies if p == "/v1/evaluation/jobs"][-1]
    assert set(sent["config"]["tasks"]) == {"llm-as-judge"}


def test_retriever_evaluation_parses_recall_and_ndcg(
    fake: FakeNMPServer, platform: NemoPlatform, beir_files: DatasetFiles
) -> None:
    fake.state.scores.update({"recall_5": 0.42, "recall_10": 0.55, "ndcg_cut_10": 0.37})
    candidate = _candidate(EMBEDDER, model_type="embedding")
    datasets = platform.upload_datasets(job_id="job-3", files=beir_files)
    beir_repo = datasets["beir_files_url"].removeprefix("hf://datasets/")
    assert set(fake.state.repos[beir_repo]) == {"corpus.jsonl", "queries.jsonl", "qrels/test.tsv"}
    handle = platform.start_evaluation(
        job_id="job-3",
        candidate=candidate,
        eval_type="base",
        datasets=datasets,
        config=_config(candidate),
    )
    sent = next(b for m, p, b in fake.state.bodies if p == "/v1/evaluation/jobs")
    assert sent["config"]["type"] == "retriever"
    assert sent["target"]["type"] == "retriever"
    _poll_until_terminal(platform.poll_evaluation, handle)
    scores = platform.evaluation_outcome(handle).platform_scores
    assert scores["recall@5"] == 0.42
    assert scores["recall@10"] == 0.55
    assert scores["ndcg@10"] == 0.37


def test_evaluation_cancel_and_failure(
    fake: FakeNMPServer,
    platform: NemoPlatform,
    llm_files: DatasetFiles,
) -> None:
    candidate = _candidate()
    config = _config(candidate)
    datasets = platform.upload_datasets(job_id="job-1", files=llm_files)
    start = {"job_id": "job-1", "candidate": candidate, "datasets": datasets, "config": config}
    handle = platform.start_evaluation(eval_type="base", **start)  # type: ignore[arg-type]
    platform.cancel_evaluation(handle)
    assert [e.path for e in fake.state.entries("cancelled", "evaluation_job")] == [
        f"/v1/evaluation/jobs/{handle['job_id']}/cancel"
    ]
    assert _poll_until_terminal(platform.poll_evaluation, handle)[-1].state is WorkState.cancelled
    platform.cancel_evaluation(handle)  # idempotent
    assert len(fake.state.entries("cancelled", "evaluation_job")) == 1

    fake.state.fail_next_evaluation("judge endpoint returned 401")
    failing = platform.start_evaluation(eval_type="base", **start)  # type: ignore[arg-type]
    final = _poll_until_terminal(platform.poll_evaluation, failing)[-1]
    assert final.state is WorkState.failed
    assert "judge endpoint returned 401" in (final.message or "")


# -- retries and errors -------------------------------------------------------------------


def test_5xx_burst_is_retried_then_succeeds(
    fake: FakeNMPServer, platform: NemoPlatform, llm_files: DatasetFiles
) -> None:
    candidate = _candidate()
    datasets = platform.upload_datasets(job_id="job-1", files=llm_files)
    fault = fake.state.inject(host="N", method="POST", path="^/v1/evaluation/jobs$", times=2)
    handle = platform.start_evaluation(
        job_id="job-1", candidate=candidate, eval_type="base", datasets=datasets,
        config=_config(candidate),
    )  # fmt: skip
    assert fault.hits == 2
    assert handle["job_id"].startswith("eval-")
    assert len(fake.state.entries("created", "evaluation_job")) == 1


def test_persistent_5xx_surfaces_as_platform_unavailable(
    fake: FakeNMPServer, platform: NemoPlatform
) -> None:
    fake.state.inject(host="P", method="GET", path="^/v1/models$", status=502, times=None)
    with pytest.raises(PlatformUnavailable, match=r"NIM Proxy: GET /v1/models returned HTTP 502"):
        platform.start_deployment(job_id="job-1", candidate=_candidate())
    assert sum(1 for h, m, p in fake.state.requests if h == "P") == FAST_RETRY.attempts


def test_permanent_4xx_is_a_platform_error_naming_service_and_endpoint(
    fake: FakeNMPServer, platform: NemoPlatform
) -> None:
    fake.state.inject(
        host="N", method="GET", path="/status$", status=403, times=None,
        body={"detail": "namespace access denied"},
    )  # fmt: skip
    handle = {"job_id": "cust-abc", "output_model": "ns/m@cust-abc", "finetuning_type": "lora"}
    with pytest.raises(PlatformError) as caught:
        platform.poll_customization(handle)
    assert not isinstance(caught.value, PlatformUnavailable)
    message = str(caught.value)
    assert "Customizer" in message
    assert "/v1/customization/jobs/cust-abc/status" in message
    assert "403" in message
    assert "namespace access denied" in message
    assert sum(1 for h, m, p in fake.state.requests if p.endswith("/status")) == 1  # no retry


def test_unknown_ids_are_reported_not_raised(platform: NemoPlatform) -> None:
    gone = {"job_id": "eval-missing", "plan": []}
    assert platform.poll_evaluation(gone).state is WorkState.failed
    platform.cancel_evaluation(gone)
    platform.delete_evaluation(gone)


def test_slow_responses_time_out_as_unavailable(fake: FakeNMPServer) -> None:
    fake.state.inject(host="P", method="GET", path="^/v1/models$", status=0, delay_s=1.0, times=2)
    nemo = _platform(fake, timeout_s=0.3, retry=RetryPolicy(attempts=2, initial_wait_s=0.01))
    try:
        with pytest.raises(PlatformUnavailable, match="NIM Proxy"):
            nemo.start_deployment(job_id="job-1", candidate=_candidate())
    finally:
        nemo.close()


def test_missing_image_tag_for_an_uncatalogued_model_is_a_config_error(
    platform: NemoPlatform,
) -> None:
    candidate = _candidate("acme/tiny-1b", nim=NimSettings(image_name="nvcr.io/nim/acme/tiny"))
    with pytest.raises(ConfigError, match="image_tag"):
        platform.start_deployment(job_id="job-1", candidate=candidate)


# -- pure pieces --------------------------------------------------------------------------


def test_find_score_searches_groups_and_retriever_prefixes() -> None:
    documented = {
        "groups": {
            "evaluation": {"metrics": {"evaluation": {"scores": {"recall_5": {"value": 1.0}}}}}
        }
    }
    assert find_score(documented, task="t", metric="recall_5", score="recall_5") == 1.0
    recorded = {
        "tasks": {
            "t": {"metrics": {"retriever.recall_5": {"scores": {"recall_5": {"value": 0.2}}}}}
        }
    }
    assert find_score(recorded, task="t", metric="recall_5", score="recall_5") == 0.2
    assert find_score({"tasks": {}}, task="t", metric="m", score="s") is None


def test_catalogue_loads_families_judges_and_embedders() -> None:
    catalogue = load_catalogue()
    assert len(catalogue) >= 20
    kinds = {entry.kind for entry in catalogue.values()}
    assert kinds == {"llm", "judge", "embedding"}
    assert catalogue[LLM].customization_target == "meta/llama-3.2-1b-instruct@2.0"
    assert "all_weights" in catalogue[EMBEDDER].finetuning_types


def test_create_platform_reads_the_nmp_settings(fake: FakeNMPServer) -> None:
    from flywheel.platforms.nemo import create_platform
    from flywheel.settings import Settings

    settings = Settings(
        nmp_base_url=fake.base_url,
        nmp_datastore_url=fake.datastore_url,
        nmp_nim_url=fake.nim_url,
        nmp_token="tok-123",
    )
    nemo = create_platform(settings)
    try:
        fake.state.served[LLM] = 0
        handle = nemo.start_deployment(job_id="job-1", candidate=_candidate())
        assert handle["kind"] == "served"
        assert "tok-123" not in json.dumps(handle)
    finally:
        nemo.close()
    with pytest.raises(ConfigError, match="NMP_DATASTORE_URL"):
        create_platform(Settings(nmp_base_url=fake.base_url, nmp_nim_url=fake.nim_url))


def test_embedding_customization_trains_all_weights_and_evaluates_the_served_name(
    fake: FakeNMPServer, platform: NemoPlatform, beir_files: DatasetFiles
) -> None:
    candidate = _candidate(EMBEDDER, model_type="embedding")
    config = _config(candidate)
    datasets = platform.upload_datasets(job_id="job-3", files=beir_files)
    handle = platform.start_customization(
        job_id="job-3", candidate=candidate, datasets=datasets, config=config
    )
    body = next(b for m, p, b in fake.state.bodies if p == "/v1/customization/jobs")
    assert body["hyperparameters"]["finetuning_type"] == "all_weights"
    assert "lora" not in body["hyperparameters"]
    assert body["dataset_parameters"] == {"num_hard_negatives": 5}
    assert _poll_until_terminal(platform.poll_customization, handle)[-1].state is (
        WorkState.completed
    )
    evaluation = platform.start_evaluation(
        job_id="job-3",
        candidate=candidate,
        eval_type="customized",
        datasets=datasets,
        config=config,
        customization=handle,
    )
    assert "@" not in evaluation["model"]  # full-weight outputs are served as ns/name (§6)
    assert evaluation["model"] == handle["output_model"].split("@", 1)[0]


def test_a_retried_start_keeps_owning_the_deployment_it_created(
    fake: FakeNMPServer, platform: NemoPlatform
) -> None:
    first = platform.start_deployment(job_id="job-1", candidate=_candidate())
    _poll_until_terminal(platform.poll_deployment, first)
    again = platform.start_deployment(job_id="job-1", candidate=_candidate())  # at-least-once
    assert again == first
    other = platform.start_deployment(job_id="job-2", candidate=_candidate())
    assert other["owned"] is False
    assert len(fake.state.entries("created", "model_deployment")) == 1


# -- per-item results (download-results, §8.5) ----------------------------------------------


def _completed_evaluation(
    platform: NemoPlatform, datasets: Handle, candidate: CandidateModel, config: JobConfig
) -> Handle:
    handle = platform.start_evaluation(
        job_id="job-1", candidate=candidate, eval_type="base", datasets=datasets, config=config
    )
    assert _poll_until_terminal(platform.poll_evaluation, handle)[-1].state is (WorkState.completed)
    return handle


def test_outcome_carries_per_item_generations_from_the_results_archive(
    fake: FakeNMPServer,
    platform: NemoPlatform,
    llm_files: DatasetFiles,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JUDGE_KEY", JUDGE_KEY)
    call = {"type": "function", "function": {"name": "news", "arguments": "{}"}}
    wrong = {"role": "assistant", "content": "", "tool_calls": [call]}
    fake.state.answer = lambda index, row: (
        wrong if index == 1 else row["response"]["choices"][0]["message"]
    )
    candidate = _candidate()
    datasets = platform.upload_datasets(job_id="job-1", files=llm_files)
    handle = _completed_evaluation(
        platform, datasets, candidate, _config(candidate, _remote_judge())
    )
    outcome = platform.evaluation_outcome(handle)

    assert outcome.platform_scores["function_name_accuracy"] == 0.8  # NMP's aggregate, kept
    assert [p.index for p in outcome.predictions] == [0, 1]
    first, second = outcome.predictions
    assert first.response is not None
    assert first.response["tool_calls"][0]["function"]["name"] == "weather"
    assert second.response == wrong
    assert first.input_tokens == 20
    assert first.output_tokens == 5
    assert first.judge_reply == "RATING: 1"  # the correctness judge's per-item verdict
    assert outcome.artifacts["per_item"] == (
        "download-results: results/custom-tool-calling/samples.jsonl"
    )
    # Our metric code scores the items: one of two right, where NMP said 0.8.
    assert llm_files.eval is not None
    refs = read_references(llm_files.eval)
    report = evaluate_tool_calls(refs, [p.response for p in outcome.predictions])
    assert report.function_name_accuracy.value == 0.5


def test_generic_outcome_keeps_the_judge_similarity_per_item(
    fake: FakeNMPServer, platform: NemoPlatform, tmp_path: Path
) -> None:
    row = {
        "request": {"messages": [{"role": "user", "content": "hi"}]},
        "response": {"choices": [{"message": {"role": "assistant", "content": "hello"}}]},
    }
    files = DatasetFiles(root=tmp_path, eval=_write_jsonl(tmp_path / "e.jsonl", [row, row, row]))
    datasets = platform.upload_datasets(job_id="job-1", files=files)
    candidate = _candidate()
    judged = _config(candidate, LLMJudgeConfig(type="deployed", model_name="judge-70b"))
    outcome = platform.evaluation_outcome(
        _completed_evaluation(platform, datasets, candidate, judged)
    )
    assert [p.response for p in outcome.predictions] == [
        {"role": "assistant", "content": "hello"}
    ] * 3
    assert [p.judge_reply for p in outcome.predictions] == ["RATING: 7"] * 3
    assert outcome.platform_scores == pytest.approx({"judge_similarity": 6 / 9})


@pytest.mark.parametrize(
    ("archive", "reason"),
    [
        (b"<html>proxy error</html>", "not a zip file"),
        ("aggregate-only", "no per-item generations (members: results.json, logs/run.log)"),
    ],
)
def test_an_archive_without_per_item_data_falls_back_to_platform_scores(
    fake: FakeNMPServer,
    platform: NemoPlatform,
    llm_files: DatasetFiles,
    archive: bytes | str,
    reason: str,
) -> None:
    if archive == "aggregate-only":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as zipped:
            zipped.writestr("results.json", json.dumps({"tasks": {}, "groups": {}}))
            zipped.writestr("logs/run.log", "done\n")
        archive = buffer.getvalue()
    assert isinstance(archive, bytes)
    fake.state.archive_override = archive
    candidate = _candidate()
    datasets = platform.upload_datasets(job_id="job-1", files=llm_files)
    outcome = platform.evaluation_outcome(
        _completed_evaluation(platform, datasets, candidate, _config(candidate))
    )
    assert outcome.predictions == []
    assert outcome.platform_scores["function_name_accuracy"] == 0.8
    assert outcome.artifacts["per_item"].startswith("unavailable: ")
    assert reason in outcome.artifacts["per_item"]


def test_download_results_refused_or_failing(
    fake: FakeNMPServer, platform: NemoPlatform, llm_files: DatasetFiles
) -> None:
    candidate = _candidate()
    datasets = platform.upload_datasets(job_id="job-1", files=llm_files)
    handle = _completed_evaluation(platform, datasets, candidate, _config(candidate))
    fake.state.inject(host="N", method="GET", path="/download-results$", status=404)
    refused = platform.evaluation_outcome(handle)  # a permanent refusal: aggregate scores only
    assert refused.predictions == []
    assert "HTTP 404" in refused.artifacts["per_item"]
    assert "download-results" in refused.artifacts["per_item"]

    fake.state.inject(host="N", method="GET", path="/download-results$", status=503, times=None)
    with pytest.raises(PlatformUnavailable, match="download-results returned HTTP 503"):
        platform.evaluation_outcome(handle)  # transient: finalize retries, not settles


def test_retriever_outcome_carries_per_query_rankings_for_our_metrics(
    fake: FakeNMPServer, platform: NemoPlatform, tmp_path: Path
) -> None:
    beir = tmp_path / "beir"
    _write_jsonl(beir / "corpus.jsonl", [{"_id": f"d{i}", "text": f"doc {i}"} for i in range(4)])
    _write_jsonl(beir / "queries.jsonl", [{"_id": q, "text": q} for q in ("q1", "q2")])
    (beir / "qrels").mkdir()
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td3\t1\n")
    files = DatasetFiles(root=tmp_path, beir_dir=beir)
    # q1: the relevant d1 ranked first; q2: the relevant d3 ranked second.
    fake.state.rank = lambda query, corpus, relevant: (
        ["d1", "d0", "d2", "d3"] if query == "q1" else ["d0", "d3", "d1", "d2"]
    )
    fake.state.scores.update({"recall_5": 0.42, "recall_10": 0.55, "ndcg_cut_10": 0.37})
    candidate = _candidate(EMBEDDER, model_type="embedding")
    config = _config(candidate)
    datasets = platform.upload_datasets(job_id="job-1", files=files)
    outcome = platform.evaluation_outcome(
        _completed_evaluation(platform, datasets, candidate, config)
    )
    assert outcome.rankings == {"q1": ["d1", "d0", "d2", "d3"], "q2": ["d0", "d3", "d1", "d2"]}
    assert outcome.platform_scores["recall@5"] == 0.42
    assert outcome.artifacts["per_item"] == "download-results: results/flywheel-beir/run.json"
    ours = score_retrieval_eval(outcome=outcome, qrels=read_qrels(beir), config=config)
    assert ours["recall@1"]["value"] == 0.5
    assert ours["recall@5"]["value"] == 1.0
    assert ours["mrr@10"]["value"] == pytest.approx(0.75)
    assert ours["ndcg@10"]["value"] == pytest.approx((1 + 1 / math.log2(3)) / 2)


def _zip(members: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        for name, text in members.items():
            zipped.writestr(name, text)
    return buffer.getvalue()


def test_archive_parser_tolerates_other_layouts() -> None:
    samples = {
        "samples": [
            {"item_index": 1, "sample": {"output_text": "second"}},
            {"item_index": 0, "sample": {"output_text": "first"}, "error": "timeout"},
            {"item_index": 0, "sample": {"output_text": "duplicate"}},
        ]
    }
    parsed = parse_archive(
        _zip(
            {
                "results.json": json.dumps({"tasks": {"x": {}}}),
                "other/broken.jsonl": "{not json",
                "__MACOSX/._samples.json": "junk",
                "out/llm-as-judge/samples.json": json.dumps(samples),
            }
        ),
        retriever=False,
        task="llm-as-judge",
    )
    assert parsed.source == "out/llm-as-judge/samples.json"
    assert [(p.index, p.response, p.error) for p in parsed.predictions] == [
        (0, {"role": "assistant", "content": "first"}, "timeout"),
        (1, {"role": "assistant", "content": "second"}, None),
    ]

    scored = [{"corpus_id": "b", "score": 0.2}, {"corpus_id": "a", "score": 0.9}]
    hits = [{"query_id": "q1", "hits": scored}, {"qid": "q2", "retrieved": ["c", "a"]}]
    ranked = parse_archive(
        _zip({"r/queries.jsonl": "\n".join(map(json.dumps, hits))}), retriever=True
    )
    assert ranked.rankings == {"q1": ["a", "b"], "q2": ["c", "a"]}

    none = parse_archive(_zip({"metrics.json": json.dumps({"q1": "not a run"})}), retriever=True)
    assert none.rankings == {}
    assert none.reason is not None
    assert "per-query retrieved ids" in none.reason


# -- no duplicate creates ------------------------------------------------------------------


def test_a_lost_evaluation_create_answer_is_adopted_not_repeated(
    fake: FakeNMPServer, platform: NemoPlatform, llm_files: DatasetFiles
) -> None:
    candidate = _candidate()
    datasets = platform.upload_datasets(job_id="job-1", files=llm_files)
    fault = fake.state.inject(
        host="N", method="POST", path="^/v1/evaluation/jobs$", status=503, perform=True
    )
    start = {"job_id": "job-1", "candidate": candidate, "datasets": datasets,
             "config": _config(candidate), "eval_type": "base"}  # fmt: skip
    handle = platform.start_evaluation(**start)  # type: ignore[arg-type]
    assert fault.hits == 1
    created = fake.state.entries("created", "evaluation_job")
    assert [e.key for e in created] == [handle["job_id"]]
    job = fake.state.evaluation_jobs[handle["job_id"]].record
    assert job["custom_fields"]["flywheel_create_key"] == f"job-1/{LLM}/base"

    again = platform.start_evaluation(**start)  # type: ignore[arg-type]  # a redone start
    assert again["job_id"] == handle["job_id"]
    assert len(fake.state.entries("created", "evaluation_job")) == 1
    other = platform.start_evaluation(**{**start, "eval_type": "icl"})  # type: ignore[arg-type]
    assert other["job_id"] != handle["job_id"]


def test_a_lost_customization_create_answer_is_adopted_not_repeated(
    fake: FakeNMPServer, platform: NemoPlatform, llm_files: DatasetFiles
) -> None:
    candidate = _candidate()
    datasets = platform.upload_datasets(job_id="job-1", files=llm_files)
    fake.state.inject(
        host="N", method="POST", path="^/v1/customization/jobs$", status=504, perform=True
    )
    handle = platform.start_customization(
        job_id="job-1", candidate=candidate, datasets=datasets, config=_config(candidate)
    )
    created = fake.state.entries("created", "customization_job")
    assert [e.key for e in created] == [handle["job_id"]]
    assert (
        handle["output_model"]
        == fake.state.customization_jobs[handle["job_id"]].record["output_model"]
    )
    again = platform.start_customization(
        job_id="job-1", candidate=candidate, datasets=datasets, config=_config(candidate)
    )
    assert again == handle
    assert len(fake.state.entries("created", "customization_job")) == 1


def test_a_lost_deployment_create_answer_is_adopted_and_owned(
    fake: FakeNMPServer, platform: NemoPlatform
) -> None:
    fake.state.inject(
        host="N", method="POST", path="^/v1/deployment/model-deployments$", perform=True
    )
    handle = platform.start_deployment(job_id="job-1", candidate=_candidate())
    assert handle["owned"] is True
    assert len(fake.state.entries("created", "model_deployment")) == 1
    assert sum(1 for h, m, p in fake.state.requests if m == "POST" and "deployments" in p) == 1


# -- full-weight customized embedders are served for their evaluation ---------------------


def _customized_embedder(
    platform: NemoPlatform, beir_files: DatasetFiles
) -> tuple[CandidateModel, JobConfig, Handle, Handle]:
    candidate = _candidate(EMBEDDER, model_type="embedding")
    config = _config(candidate)
    datasets = platform.upload_datasets(job_id="job-3", files=beir_files)
    customization = platform.start_customization(
        job_id="job-3", candidate=candidate, datasets=datasets, config=config
    )
    _poll_until_terminal(platform.poll_customization, customization)
    return candidate, config, datasets, customization


def test_full_weight_embedder_is_deployed_evaluated_then_shut_down(
    fake: FakeNMPServer, platform: NemoPlatform, beir_files: DatasetFiles
) -> None:
    candidate, config, datasets, customization = _customized_embedder(platform, beir_files)
    served = customization["output_model"].split("@", 1)[0]
    assert served not in fake.state.served  # a full-weight output is not served by itself
    handle = platform.start_evaluation(
        job_id="job-3", candidate=candidate, eval_type="customized", datasets=datasets,
        config=config, customization=customization,
    )  # fmt: skip
    assert not fake.state.entries("created", "evaluation_job")  # not before it is served
    deployment = handle["serving"]
    assert deployment["owned"] is True
    body = next(b for m, p, b in fake.state.bodies if b.get("name") == deployment["name"])
    assert body["config"]["model"] == served
    assert body["config"]["nim_deployment"]["image_name"] == (
        "nvcr.io/nim/nvidia/llama-3.2-nv-embedqa-1b-v2"
    )
    assert body["config"]["nim_deployment"]["disable_lora_support"] is True

    seen = _poll_until_terminal(platform.poll_evaluation, handle)
    assert seen[0].state is WorkState.pending
    assert "deploying" in (seen[0].message or "")
    assert seen[0].details["phase"] == "deployment"
    started = [p for p in seen if p.details.get("phase") == "evaluation"]
    assert len(started) == 1
    assert seen[-1].state is WorkState.completed
    created = fake.state.entries("created", "evaluation_job")
    assert len(created) == 1
    job = fake.state.evaluation_jobs[created[0].key].record
    assert (
        job["target"]["retriever"]["pipeline"]["query_embedding_model"]["api_endpoint"]["model_id"]
        == served
    )
    key = f"{deployment['namespace']}/{deployment['name']}"
    assert [e.key for e in fake.state.entries("deleted", "model_deployment")] == [key]

    outcome = platform.evaluation_outcome(handle)
    assert outcome.artifacts["evaluation_job"] == created[0].key
    assert outcome.rankings == {"q1": ["d1"]}
    platform.delete_evaluation(handle)
    platform.delete_evaluation(handle)  # idempotent
    assert [e.key for e in fake.state.entries("deleted", "evaluation_job")] == [created[0].key]
    assert len(fake.state.entries("deleted", "model_deployment")) == 1


def test_cancelling_while_the_embedder_deploys_stops_the_deployment(
    fake: FakeNMPServer, platform: NemoPlatform, beir_files: DatasetFiles
) -> None:
    candidate, config, datasets, customization = _customized_embedder(platform, beir_files)
    handle = platform.start_evaluation(
        job_id="job-3", candidate=candidate, eval_type="customized", datasets=datasets,
        config=config, customization=customization,
    )  # fmt: skip
    platform.cancel_evaluation(handle)
    platform.cancel_evaluation(handle)  # idempotent
    key = f"{handle['serving']['namespace']}/{handle['serving']['name']}"
    assert [e.key for e in fake.state.entries("deleted", "model_deployment")] == [key]
    assert not fake.state.entries("created", "evaluation_job")
    assert not fake.state.entries("cancelled", "evaluation_job")


def test_a_failed_embedder_deployment_fails_its_evaluation(
    fake: FakeNMPServer, platform: NemoPlatform, beir_files: DatasetFiles
) -> None:
    candidate, config, datasets, customization = _customized_embedder(platform, beir_files)
    fake.state.fail_next_deployment("insufficient GPUs in node pool")
    handle = platform.start_evaluation(
        job_id="job-3", candidate=candidate, eval_type="customized", datasets=datasets,
        config=config, customization=customization,
    )  # fmt: skip
    final = _poll_until_terminal(platform.poll_evaluation, handle)[-1]
    assert final.state is WorkState.failed
    assert "insufficient GPUs in node pool" in (final.message or "")
    assert "serving the customized model" in (final.message or "")
    assert not fake.state.entries("created", "evaluation_job")
    assert len(fake.state.entries("deleted", "model_deployment")) == 1
    with pytest.raises(PlatformError, match="no evaluation job was started"):
        platform.evaluation_outcome(handle)


def test_a_cancel_during_the_embedder_evaluation_stops_both(
    fake: FakeNMPServer, platform: NemoPlatform, beir_files: DatasetFiles
) -> None:
    candidate, config, datasets, customization = _customized_embedder(platform, beir_files)
    fake.state.hold("evaluation", "running:0.0")
    handle = platform.start_evaluation(
        job_id="job-3", candidate=candidate, eval_type="customized", datasets=datasets,
        config=config, customization=customization,
    )  # fmt: skip
    for _ in range(10):
        if platform.poll_evaluation(handle).details.get("status") == "running":
            break
    else:
        raise AssertionError("the evaluation never ran")
    assert not fake.state.entries("deleted", "model_deployment")  # still needed
    platform.cancel_evaluation(handle)
    assert len(fake.state.entries("cancelled", "evaluation_job")) == 1
    assert len(fake.state.entries("deleted", "model_deployment")) == 1


# -- work whose start answer was lost is found by its owner tag when the job ends ---------


def test_release_job_stops_only_what_the_job_left_running(
    fake: FakeNMPServer, platform: NemoPlatform, llm_files: DatasetFiles
) -> None:
    candidate = _candidate()
    config = _config(candidate)
    datasets = platform.upload_datasets(job_id="job-9", files=llm_files)
    # Started, but (as if every answer had been lost) no handle kept by the caller.
    deployment = platform.start_deployment(job_id="job-9", candidate=candidate)
    evaluation = platform.start_evaluation(
        job_id="job-9", candidate=candidate, eval_type="base", datasets=datasets, config=config
    )
    customization = platform.start_customization(
        job_id="job-9", candidate=candidate, datasets=datasets, config=config
    )
    # Another job's live work, and this job's work that already ended, are left alone.
    other_datasets = platform.upload_datasets(job_id="job-8", files=llm_files)
    others = platform.start_evaluation(
        job_id="job-8",
        candidate=candidate,
        eval_type="base",
        datasets=other_datasets,
        config=config,
    )
    ended = platform.start_evaluation(
        job_id="job-9", candidate=candidate, eval_type="icl", datasets=datasets, config=config
    )
    platform.cancel_evaluation(ended)
    _poll_until_terminal(platform.poll_evaluation, ended)

    stopped = platform.release_job("job-9")

    assert sorted(stopped) == sorted(
        [
            f"evaluation job {evaluation['job_id']}",
            f"customization job {customization['job_id']}",
            f"deployment {deployment['namespace']}/{deployment['name']}",
        ]
    )
    cancelled = {e.key for e in fake.state.entries("cancelled", "evaluation_job")}
    assert cancelled == {evaluation["job_id"], ended["job_id"]}
    assert others["job_id"] not in cancelled
    assert [e.key for e in fake.state.entries("cancelled", "customization_job")] == [
        customization["job_id"]
    ]
    assert [e.key for e in fake.state.entries("deleted", "model_deployment")] == [
        f"{deployment['namespace']}/{deployment['name']}"
    ]
    assert _poll_until_terminal(platform.poll_evaluation, evaluation)[-1].state is (
        WorkState.cancelled
    )
    assert platform.release_job("job-9") == []  # idempotent: nothing live is left


def test_a_customized_embedder_leases_room_for_its_served_output(platform: NemoPlatform) -> None:
    embedder = _candidate(EMBEDDER, model_type="embedding", gpus=1)
    assert platform.peak_gpus(embedder) == 2  # base NIM + the deployed full-weight output
    frozen = _candidate(EMBEDDER, model_type="embedding", gpus=1, customization_enabled=False)
    assert platform.peak_gpus(frozen) == 1
    assert platform.peak_gpus(_candidate(gpus=2)) == 2  # a LoRA adapter rides on its NIM
