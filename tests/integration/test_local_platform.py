"""The local platform end to end: worker processes, tiny models, a loopback endpoint.

Models are built in memory (no downloads); workers run with one torch thread.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import uvicorn
from fastapi import FastAPI, Request

from flywheel.config.schema import (
    CandidateModel,
    EmbeddingJobConfig,
    JobConfig,
    LLMJudgeConfig,
    LoRAConfig,
    TrainingConfig,
)
from flywheel.errors import PlatformError
from flywheel.platforms.base import DatasetFiles, Handle, Progress, WorkState
from flywheel.platforms.local import LocalPlatform
from flywheel.platforms.local.jobfiles import WorkDir
from flywheel.platforms.local.processes import WorkerPool

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
WEATHER_CALL = {
    "id": "c1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}
DEADLINE_S = 240.0


def _eval_rows() -> list[dict[str, Any]]:
    ask = [{"role": "user", "content": "What is the weather in Paris today?"}]
    chat = [{"role": "user", "content": "Book a table for two at eight."}]
    return [
        {
            "request": {"messages": ask, "tools": [WEATHER_TOOL]},
            "response": {
                "choices": [{"message": {"role": "assistant", "tool_calls": [WEATHER_CALL]}}]
            },
        },
        {
            "request": {"messages": chat},
            "response": {"choices": [{"message": {"role": "assistant", "content": "Done."}}]},
        },
        {
            "request": {"messages": ask, "tools": [WEATHER_TOOL]},
            "response": {
                "choices": [{"message": {"role": "assistant", "tool_calls": [WEATHER_CALL]}}]
            },
        },
    ]


def _train_rows() -> list[dict[str, Any]]:
    return [
        {
            "messages": [*row["request"]["messages"], row["response"]["choices"][0]["message"]],
            "tools": row["request"].get("tools", []),
        }
        for row in _eval_rows()
    ]


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n")
    return path


@pytest.fixture(scope="module")
def tiny_chat_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from tests.support.tiny_models import build_tiny_chat_model

    torch.set_num_threads(1)
    return build_tiny_chat_model(tmp_path_factory.mktemp("tiny-chat"))


@pytest.fixture
def files(tmp_path: Path) -> DatasetFiles:
    root = tmp_path / "datasets"
    root.mkdir()
    return DatasetFiles(
        root=root,
        eval=_write_jsonl(root / "eval.jsonl", _eval_rows()),
        train=_write_jsonl(root / "train.jsonl", _train_rows() * 2),
        validation=_write_jsonl(root / "validation.jsonl", _train_rows()[:1]),
    )


@pytest.fixture
def platform(tmp_path: Path) -> LocalPlatform:
    return LocalPlatform(
        tmp_path / "data", torch_threads=1, max_concurrent_trainings=1, cancel_grace_s=30
    )


def _wait(
    poll: Callable[[Handle], Progress], handle: Handle, until: Callable[[Progress], bool]
) -> Progress:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        progress = poll(handle)
        if until(progress):
            return progress
        assert not progress.state.terminal, progress
        assert time.monotonic() < deadline, f"timed out at {progress}"
        time.sleep(0.2)


def _finished(progress: Progress) -> bool:
    return progress.state.terminal


def _config(candidate: CandidateModel, **extra: Any) -> JobConfig:
    return JobConfig(
        candidates=[candidate],
        training_config=TrainingConfig(epochs=1, batch_size=2, learning_rate=0.01),
        lora_config=LoRAConfig(adapter_dim=4, alpha=8),
        **extra,
    )


def test_local_model_evaluation_through_the_platform(
    platform: LocalPlatform, files: DatasetFiles, tiny_chat_model: Path
) -> None:
    candidate = CandidateModel(name="tiny", hf_model=str(tiny_chat_model))
    config = _config(candidate)
    datasets = platform.upload_datasets(job_id="job-1", files=files)

    deployment = platform.start_deployment(job_id="job-1", candidate=candidate)
    assert platform.poll_deployment(deployment).state is WorkState.ready

    handle = platform.start_evaluation(
        job_id="job-1", candidate=candidate, eval_type="base", datasets=datasets, config=config
    )
    again = platform.start_evaluation(
        job_id="job-1", candidate=candidate, eval_type="base", datasets=datasets, config=config
    )
    assert again == handle  # idempotent start: the same work, not a second worker
    final = _wait(platform.poll_evaluation, handle, _finished)
    assert final.state is WorkState.completed, final

    outcome = platform.evaluation_outcome(handle)
    assert [p.index for p in outcome.predictions] == [0, 1, 2]
    for prediction in outcome.predictions:
        assert prediction.response is not None
        assert prediction.response["role"] == "assistant"
        assert prediction.latency_ms is not None
        assert prediction.latency_ms > 0
        assert prediction.input_tokens
        assert prediction.output_tokens
        assert prediction.judge_reply is None
    assert "function_name_accuracy" in outcome.platform_scores
    assert "judge_similarity" not in outcome.platform_scores  # no judge: absent, not 0

    platform.shutdown_deployment(deployment)
    platform.delete_evaluation(handle)
    assert not Path(handle["work_dir"]).exists()


def test_an_in_process_judge_records_its_replies_and_parse_failures(
    platform: LocalPlatform, files: DatasetFiles, tiny_chat_model: Path
) -> None:
    from flywheel.domain.metrics.judge import parse_correctness

    candidate = CandidateModel(name="tiny", hf_model=str(tiny_chat_model))
    judge = LLMJudgeConfig(type="local", model_name="tiny-judge", hf_model=str(tiny_chat_model))
    config = _config(candidate, llm_judge_config=judge)
    datasets = platform.upload_datasets(job_id="job-8", files=files)
    handle = platform.start_evaluation(
        job_id="job-8", candidate=candidate, eval_type="base", datasets=datasets, config=config
    )
    spec = orjson.loads(WorkDir(Path(handle["work_dir"])).spec.read_bytes())
    assert spec["judge"] == {"kind": "hf", "name": "tiny-judge", "path": str(tiny_chat_model)}
    final = _wait(platform.poll_evaluation, handle, _finished)
    assert final.state is WorkState.completed, final
    outcome = platform.evaluation_outcome(handle)

    replies = [p.judge_reply for p in outcome.predictions]
    assert len(replies) == 3
    assert all(isinstance(r, str) for r in replies)  # every item was judged, reply kept
    # The eval set offers tools, so the correctness judge (0/1) rated it. A random tiny judge
    # rarely writes a verdict: whatever it wrote, the failures are counted by the domain
    # parser and the score covers only the parsed verdicts (absent if none).
    verdicts = [v for v in map(parse_correctness, replies) if v is not None]
    assert outcome.platform_scores["judge_parse_failures"] == len(replies) - len(verdicts)
    if verdicts:
        assert outcome.platform_scores["judge_tool_call_correctness"] == pytest.approx(
            sum(verdicts) / len(verdicts)
        )
    else:
        assert "judge_tool_call_correctness" not in outcome.platform_scores
    assert "judge_similarity" not in outcome.platform_scores
    assert "function_name_accuracy" in outcome.platform_scores


def test_a_missing_model_fails_its_deployment(platform: LocalPlatform, tmp_path: Path) -> None:
    candidate = CandidateModel(name="ghost", python_package="no_such_model_package_xyz")
    handle = platform.start_deployment(job_id="job-1", candidate=candidate)
    progress = platform.poll_deployment(handle)
    assert progress.state is WorkState.failed
    assert "no_such_model_package_xyz" in (progress.message or "")


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # a background thread must not own signals
        return None


def _verdict(body: dict[str, Any]) -> str:
    """The fake judge's reply: a 0/1 verdict to the correctness rubric, 8 of 10 otherwise."""
    from flywheel.domain.metrics.judge import CORRECTNESS_SYSTEM

    if body["messages"][0]["content"] == CORRECTNESS_SYSTEM:
        return "Same call, same city.\nRATING: 1"
    return "Close.\nRATING: 8"


def _openai_app(requests: list[dict[str, Any]]) -> FastAPI:
    app = FastAPI()

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": "small"}, {"id": "judge"}]}

    @app.post("/v1/chat/completions")
    async def complete(request: Request) -> dict[str, Any]:
        body = orjson.loads(await request.body())
        requests.append(body)
        if body["model"] == "judge":
            message: dict[str, Any] = {"role": "assistant", "content": _verdict(body)}
        elif body.get("tools"):
            message = {"role": "assistant", "content": None, "tool_calls": [WEATHER_CALL]}
        else:
            message = {"role": "assistant", "content": "Done."}
        return {
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 4},
        }

    return app


@contextlib.contextmanager
def _serving(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` on a loopback port in a background thread; its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = _Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "endpoint did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def openai_server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    requests: list[dict[str, Any]] = []
    with _serving(_openai_app(requests)) as url:
        yield url, requests


def test_endpoint_evaluation_with_a_remote_judge(
    platform: LocalPlatform,
    files: DatasetFiles,
    openai_server: tuple[str, list[dict[str, Any]]],
) -> None:
    url, requests = openai_server
    candidate = CandidateModel(name="remote", endpoint_url=url, endpoint_model="small")
    judge = LLMJudgeConfig(type="remote", url=url, model_name="judge")
    config = _config(candidate, llm_judge_config=judge)
    datasets = platform.upload_datasets(job_id="job-2", files=files)

    deployment = platform.start_deployment(job_id="job-2", candidate=candidate)
    assert platform.poll_deployment(deployment).state is WorkState.ready

    handle = platform.start_evaluation(
        job_id="job-2", candidate=candidate, eval_type="base", datasets=datasets, config=config
    )
    final = _wait(platform.poll_evaluation, handle, _finished)
    assert final.state is WorkState.completed, final
    outcome = platform.evaluation_outcome(handle)

    assert outcome.platform_scores["function_name_accuracy"] == 1.0
    assert outcome.platform_scores["function_name_and_args_accuracy"] == 1.0
    # A tool-calling eval set: every item is judged for tool-call correctness (0/1), with
    # the shared rubric and the reference and predicted calls inside their tags.
    assert outcome.platform_scores["judge_tool_call_correctness"] == 1.0
    assert outcome.platform_scores["judge_parse_failures"] == 0.0
    assert "judge_similarity" not in outcome.platform_scores
    assert all(p.judge_reply == "Same call, same city.\nRATING: 1" for p in outcome.predictions)
    judge_calls = [r for r in requests if r["model"] == "judge"]
    assert len(judge_calls) == 3
    weather = next(c for c in judge_calls if "Paris" in c["messages"][1]["content"])
    assert '"get_weather"' in weather["messages"][1]["content"].split("<predicted>")[1]
    assert all(p.input_tokens == 11 and p.output_tokens == 4 for p in outcome.predictions)
    candidate_calls = [r for r in requests if r["model"] == "small"]
    assert len(candidate_calls) == 3
    # Requests run concurrently, so their arrival order is not the file's order.
    by_prompt = {call["messages"][-1]["content"]: call for call in candidate_calls}
    assert by_prompt["What is the weather in Paris today?"]["tools"] == [WEATHER_TOOL]
    assert "tools" not in by_prompt["Book a table for two at eight."]


def test_a_generic_eval_set_is_judged_for_similarity(
    platform: LocalPlatform,
    tmp_path: Path,
    openai_server: tuple[str, list[dict[str, Any]]],
) -> None:
    url, requests = openai_server
    root = tmp_path / "generic"
    root.mkdir()
    chat_only = [row for row in _eval_rows() if "tools" not in row["request"]]
    files = DatasetFiles(root=root, eval=_write_jsonl(root / "eval.jsonl", chat_only * 2))
    candidate = CandidateModel(name="remote", endpoint_url=url, endpoint_model="small")
    judge = LLMJudgeConfig(type="remote", url=url, model_name="judge")
    config = _config(candidate, llm_judge_config=judge)
    datasets = platform.upload_datasets(job_id="job-3", files=files)
    handle = platform.start_evaluation(
        job_id="job-3", candidate=candidate, eval_type="base", datasets=datasets, config=config
    )
    final = _wait(platform.poll_evaluation, handle, _finished)
    assert final.state is WorkState.completed, final
    outcome = platform.evaluation_outcome(handle)

    assert outcome.platform_scores["judge_similarity"] == pytest.approx(7 / 9)
    assert "judge_tool_call_correctness" not in outcome.platform_scores
    judge_calls = [r for r in requests if r["model"] == "judge"]
    assert len(judge_calls) == 2
    assert all(
        "<candidate>\nDone.\n</candidate>" in c["messages"][1]["content"] for c in judge_calls
    )


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
def test_customization_queues_trains_and_serves_its_adapter(
    platform: LocalPlatform, files: DatasetFiles, tiny_chat_model: Path
) -> None:
    first = CandidateModel(name="tiny-a", hf_model=str(tiny_chat_model))
    second = CandidateModel(name="tiny-b", hf_model=str(tiny_chat_model))
    config = _config(first)
    datasets = platform.upload_datasets(job_id="job-3", files=files)

    a = platform.start_customization(
        job_id="job-3", candidate=first, datasets=datasets, config=config
    )
    b = platform.start_customization(
        job_id="job-3", candidate=second, datasets=datasets, config=config
    )
    assert platform.poll_customization(b).state is WorkState.pending  # one training slot

    done_a = _wait(platform.poll_customization, a, _finished)
    assert done_a.state is WorkState.completed, done_a
    assert done_a.details["output_model"] == a["output_model"]
    assert done_a.details["steps"] == 3
    assert len(done_a.details["val_loss"]) == 1
    assert (Path(a["output_model"]) / "manifest.json").is_file()

    done_b = _wait(platform.poll_customization, b, _finished)  # b starts once a is done
    assert done_b.state is WorkState.completed, done_b

    handle = platform.start_evaluation(
        job_id="job-3",
        candidate=first,
        eval_type="customized",
        datasets=datasets,
        config=config,
        customization=a,
    )
    final = _wait(platform.poll_evaluation, handle, _finished)
    assert final.state is WorkState.completed, final
    assert len(platform.evaluation_outcome(handle).predictions) == 3

    platform.delete_customization(a)
    assert not Path(a["output_model"]).exists()


def test_cancel_mid_training_stops_the_worker(
    platform: LocalPlatform, files: DatasetFiles, tiny_chat_model: Path
) -> None:
    candidate = CandidateModel(name="tiny", hf_model=str(tiny_chat_model))
    config = _config(candidate).model_copy(
        update={"training_config": TrainingConfig(epochs=100, batch_size=1)}
    )
    datasets = platform.upload_datasets(job_id="job-4", files=files)
    handle = platform.start_customization(
        job_id="job-4", candidate=candidate, datasets=datasets, config=config
    )
    running = _wait(platform.poll_customization, handle, lambda p: p.details.get("step", 0) >= 2)
    assert running.state is WorkState.running
    assert running.details["loss"] > 0

    platform.cancel_customization(handle)
    final = _wait(platform.poll_customization, handle, _finished)
    assert final.state is WorkState.cancelled, final
    work = WorkDir(Path(handle["work_dir"]))
    assert not WorkerPool(slots_dir=platform.data_dir / "x").alive(work)  # seen from afar
    assert not platform.pool.alive(work)
    platform.cancel_customization(handle)  # idempotent
    assert platform.poll_customization(handle).state is WorkState.cancelled


def test_a_dead_worker_fails_with_a_reason(
    platform: LocalPlatform, files: DatasetFiles, tiny_chat_model: Path
) -> None:
    import signal

    candidate = CandidateModel(name="tiny", hf_model=str(tiny_chat_model))
    datasets = platform.upload_datasets(job_id="job-5", files=files)
    handle = platform.start_evaluation(
        job_id="job-5",
        candidate=candidate,
        eval_type="base",
        datasets=datasets,
        config=_config(candidate),
    )
    pid = platform.pool.pid(WorkDir(Path(handle["work_dir"])))
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)
    final = _wait(platform.poll_evaluation, handle, _finished)
    assert final.state is WorkState.failed
    assert "exited without a result" in (final.message or "")


EMBEDDING_DOCS = {
    "d1": "The weather in Paris is sunny.",
    "d2": "Book a table for two.",
    "d3": "Cancel my order.",
}


def _beir_files(root: Path) -> DatasetFiles:
    """A three-passage BEIR eval set with two judged queries, and hard-negative training rows."""
    docs = EMBEDDING_DOCS
    (root / "eval" / "qrels").mkdir(parents=True)
    _write_jsonl(
        root / "eval" / "corpus.jsonl",
        [{"_id": k, "title": "", "text": v} for k, v in docs.items()],
    )
    _write_jsonl(
        root / "eval" / "queries.jsonl",
        [{"_id": "q1", "text": "weather in Paris"}, {"_id": "q2", "text": "table for two"}],
    )
    (root / "eval" / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n"
    )
    train = _write_jsonl(
        root / "training.jsonl",
        [
            {"query": "weather in Paris", "pos_doc": docs["d1"], "neg_doc": [docs["d3"]]},
            {"query": "table for two", "pos_doc": docs["d2"], "neg_doc": [docs["d1"], docs["d3"]]},
        ],
    )
    return DatasetFiles(root=root, train=train, beir_dir=root / "eval")


def test_embedding_fine_tuning_and_ranking(platform: LocalPlatform, tmp_path: Path) -> None:
    from tests.support.tiny_models import build_tiny_sentence_model

    model_dir = build_tiny_sentence_model(tmp_path / "st")
    files = _beir_files(tmp_path / "emb")
    candidate = CandidateModel(name="emb", model_type="embedding", hf_model=str(model_dir))
    config = JobConfig(
        candidates=[candidate], embedding_config=EmbeddingJobConfig(epochs=2, batch_size=2)
    )
    datasets = platform.upload_datasets(job_id="job-6", files=files)

    base = platform.start_evaluation(
        job_id="job-6", candidate=candidate, eval_type="base", datasets=datasets, config=config
    )
    custom = platform.start_customization(
        job_id="job-6", candidate=candidate, datasets=datasets, config=config
    )
    assert _wait(platform.poll_evaluation, base, _finished).state is WorkState.completed
    rankings = platform.evaluation_outcome(base).rankings
    assert set(rankings) == {"q1", "q2"}
    assert sorted(rankings["q1"]) == ["d1", "d2", "d3"]

    done = _wait(platform.poll_customization, custom, _finished)
    assert done.state is WorkState.completed, done
    manifest = orjson.loads((Path(custom["output_model"]) / "manifest.json").read_bytes())
    assert manifest["config"]["temperature"] == config.embedding_config.temperature
    assert manifest["config"]["max_seq_length"] == config.embedding_config.max_seq_length
    tuned = platform.start_evaluation(
        job_id="job-6",
        candidate=candidate,
        eval_type="customized",
        datasets=datasets,
        config=config,
        customization=custom,
    )
    assert _wait(platform.poll_evaluation, tuned, _finished).state is WorkState.completed
    assert set(platform.evaluation_outcome(tuned).rankings) == {"q1", "q2"}


def _embedding_app(model_dir: Path, batches: list[int]) -> FastAPI:
    """``/v1/embeddings`` served by the tiny sentence model (as vLLM or TEI would serve it)."""
    from flywheel.platforms.local.embeddings import load_sentence_model
    from flywheel.platforms.local.models import ModelSource

    model = load_sentence_model(
        ModelSource(kind="hf", name="st", path=str(model_dir)),
        max_seq_length=EmbeddingJobConfig().max_seq_length,
    )
    app = FastAPI()

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": "emb"}]}

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> dict[str, Any]:
        body = orjson.loads(await request.body())
        assert body["model"] == "emb"
        batches.append(len(body["input"]))
        rows = model.encode(body["input"], convert_to_numpy=True).tolist()
        data = [{"object": "embedding", "index": i, "embedding": r} for i, r in enumerate(rows)]
        return {"object": "list", "data": data, "model": "emb"}

    return app


def test_an_embedding_endpoint_ranks_like_the_same_model_in_process(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    from tests.support.tiny_models import build_tiny_sentence_model

    from flywheel.workflow.scoring import read_qrels, score_retrieval_eval

    model_dir = build_tiny_sentence_model(tmp_path / "st")
    files = _beir_files(tmp_path / "emb")
    local = CandidateModel(name="emb-local", model_type="embedding", hf_model=str(model_dir))
    batches: list[int] = []
    with _serving(_embedding_app(model_dir, batches)) as url:
        remote = CandidateModel(
            name="emb-remote",
            model_type="embedding",
            endpoint_url=url,
            endpoint_model="emb",
            customization_enabled=False,
        )
        config = JobConfig(candidates=[local, remote])
        datasets = platform.upload_datasets(job_id="job-7", files=files)
        deployment = platform.start_deployment(job_id="job-7", candidate=remote)
        assert platform.poll_deployment(deployment).state is WorkState.ready

        outcomes = {}
        for candidate in (local, remote):
            handle = platform.start_evaluation(
                job_id="job-7",
                candidate=candidate,
                eval_type="base",
                datasets=datasets,
                config=config,
            )
            final = _wait(platform.poll_evaluation, handle, _finished)
            assert final.state is WorkState.completed, final
            outcomes[candidate.name] = platform.evaluation_outcome(handle)

        # An endpoint has no weights here: no fine-tuning, no customized variant.
        with pytest.raises(PlatformError, match="customization_enabled: false"):
            platform.start_customization(
                job_id="job-7", candidate=remote, datasets=datasets, config=config
            )
        with pytest.raises(PlatformError, match="customization_enabled: false"):
            platform.start_evaluation(
                job_id="job-7",
                candidate=remote,
                eval_type="customized",
                datasets=datasets,
                config=config,
                customization={"output_model": str(tmp_path / "nowhere")},
            )

    assert batches == [len(EMBEDDING_DOCS), 2]  # the corpus, then the judged queries
    ranked = outcomes["emb-remote"].rankings
    assert set(ranked) == {"q1", "q2"}
    assert sorted(ranked["q1"]) == sorted(EMBEDDING_DOCS)
    assert ranked == outcomes["emb-local"].rankings
    qrels = read_qrels(files.beir_dir)
    scores = {
        name: score_retrieval_eval(outcome=outcome, qrels=qrels, config=config)
        for name, outcome in outcomes.items()
    }
    assert scores["emb-remote"] == scores["emb-local"]
    assert {"recall@1", "ndcg@10", "mrr@10"} <= set(scores["emb-remote"])


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
def test_release_job_cancels_the_jobs_live_work_only(
    platform: LocalPlatform, files: DatasetFiles, tiny_chat_model: Path
) -> None:
    first = CandidateModel(name="tiny-a", hf_model=str(tiny_chat_model))
    second = CandidateModel(name="tiny-b", hf_model=str(tiny_chat_model))
    config = _config(first)
    datasets = platform.upload_datasets(job_id="job-5", files=files)
    running = platform.start_customization(
        job_id="job-5", candidate=first, datasets=datasets, config=config
    )
    queued = platform.start_customization(
        job_id="job-5", candidate=second, datasets=datasets, config=config
    )
    stopped = platform.release_job("job-5")

    assert len(stopped) == 2, stopped
    assert platform.poll_customization(queued).state is WorkState.cancelled
    assert _wait(platform.poll_customization, running, _finished).state is WorkState.cancelled
    assert platform.release_job("job-5") == []  # nothing live is left
    assert platform.release_job("job-6") == []  # a job the platform never saw
