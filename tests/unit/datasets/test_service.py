"""build_datasets against a fake log store: files, manifest, per-candidate ICL, failures."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from flywheel.domain.logs import ChatLog, LogKind
from flywheel.errors import DatasetError
from flywheel.services.datasets import build_datasets
from tests.unit.datasets.factories import job_config, log, tool_logs


class FakeLogStore:
    """Only what build_datasets uses: iter_recent, newest first, honouring limit."""

    def __init__(self, records: list[ChatLog]) -> None:
        self.records = sorted(records, key=lambda r: -r.timestamp)
        self.limits: list[int] = []

    def iter_recent(
        self,
        client_id: str,
        workload_id: str,
        *,
        limit: int,
        kind: LogKind | None = None,
        batch_size: int = 1000,
    ) -> Iterator[ChatLog]:
        self.limits.append(limit)
        yield from self.records[:limit]


def _build(tmp_path: Path, records: list[ChatLog], **kwargs: Any) -> Any:
    config = kwargs.pop("config", None) or job_config()
    return build_datasets(
        log_store=FakeLogStore(records),  # type: ignore[arg-type]
        client_id="c",
        workload_id="w",
        config=config,
        out_dir=tmp_path,
        **kwargs,
    )


def _lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_writes_all_files_and_a_complete_manifest(tmp_path: Path) -> None:
    newer_copy = log(500, "question number 3 about topic 3 with unique words w3a w3b w3c")
    records = [*tool_logs(60), newer_copy]
    result = _build(tmp_path, records)
    m = result.manifest
    assert m["workload_type"] == "tool_calling"
    assert m["stages"]["pulled"] == 61
    assert m["stages"]["dropped"] == {"duplicate": 1}
    assert m["stages"]["kept"] == 60
    assert sum(s["records"] for s in m["splits"].values()) == 60
    assert m["splits"]["eval"]["records"] == 5
    assert m["seed"] == 42
    assert m["seed_source"] == "config"
    assert m["config"]["data_split_config"]["eval_size"] == 5
    assert m["stages"]["kept_window_ms"] == [0, 500_000]
    for name, info in m["files"].items():
        data = (tmp_path / name).read_bytes()
        assert info["bytes"] == len(data)
        assert info["sha256"] == hashlib.sha256(data).hexdigest()
        assert info["records"] == data.count(b"\n")
    assert orjson.loads((tmp_path / "manifest.json").read_bytes()) == m
    assert not list(tmp_path.glob("*.partial"))
    assert not list(tmp_path.glob(".records-*"))
    train = _lines(tmp_path / "train.jsonl")
    assert all(row["messages"][-1]["role"] == "assistant" for row in train)
    evals = _lines(tmp_path / "eval.jsonl")
    assert all(set(row) == {"request", "response"} for row in evals)
    # newest duplicate wins: the timestamp-500 record is the kept one
    assert any("w3a" in row["request"]["messages"][-1]["content"] for row in evals) or any(
        "w3a" in row["messages"][1]["content"]
        for row in train + _lines(tmp_path / "validation.jsonl")
    )


def test_icl_set_per_distinct_budget(tmp_path: Path) -> None:
    result = _build(tmp_path, tool_logs(60))
    sets = result.manifest["icl"]["sets"]
    assert [(s["candidates"], s["budget_tokens"]) for s in sets] == [
        (["small"], 1536),
        (["large"], 7680),
    ]
    assert set(result.icl_files) == {"small", "large"}
    for s in sets:
        rows = _lines(tmp_path / s["file"])
        assert len(rows) == 5
        eval_prompts = {
            r["request"]["messages"][-1]["content"] for r in _lines(tmp_path / "eval.jsonl")
        }
        for row in rows:
            shots = [m["content"] for m in row["request"]["messages"][1:-1] if m["role"] == "user"]
            assert not set(shots) & eval_prompts  # no eval prompt leaks into any ICL prompt
            assert sum(s["examples_per_item"].values()) == 5


def test_token_counters_and_semantic_selection(tmp_path: Path) -> None:
    calls: list[int] = []

    def counter(text: str) -> int:
        calls.append(1)
        return len(text) // 4

    def embed(texts: list[str]) -> np.ndarray:
        return np.array([[len(t), t.count("1"), t.count("2") + 1.0] for t in texts])

    config = job_config(icl={"example_selection": "semantic_similarity"})
    result = _build(tmp_path, tool_logs(60), token_counters={"small": counter}, embed=embed)
    assert calls
    assert result.manifest["icl"]["selection"] == "uniform_distribution"
    tokenizers = {s["candidates"][0]: s["tokenizer"] for s in result.manifest["icl"]["sets"]}
    assert tokenizers == {"small": "candidate", "large": "estimate"}
    result = _build(tmp_path, tool_logs(60), config=config, embed=embed)
    assert result.manifest["icl"]["selection"] == "semantic_similarity"


def test_semantic_without_embedder_falls_back_visibly(tmp_path: Path) -> None:
    config = job_config(icl={"example_selection": "semantic_similarity"})
    result = _build(tmp_path, tool_logs(40), config=config)
    assert result.manifest["icl"]["selection_requested"] == "semantic_similarity"
    assert result.manifest["icl"]["selection"] == "uniform_distribution"


def test_too_few_records_fail_with_stage_counts(tmp_path: Path) -> None:
    records = tool_logs(15) + [log(100 + i, "bad", call="f", arguments="{x") for i in range(3)]
    with pytest.raises(DatasetError) as err:
        _build(tmp_path, records)
    message = str(err.value)
    assert "only 15 clean records" in message
    assert "min_total_records is 20" in message
    assert "pulled 18" in message
    assert "invalid_tool_arguments=3" in message
    assert not (tmp_path / "manifest.json").exists()


def test_limit_and_seed_come_from_the_config(tmp_path: Path) -> None:
    store = FakeLogStore(tool_logs(80))
    config = job_config(limit=50, random_seed=None)
    result = build_datasets(
        log_store=store, client_id="c", workload_id="w", config=config, out_dir=tmp_path
    )  # type: ignore[arg-type]
    assert store.limits == [50]
    assert result.manifest["stages"]["pulled"] == 50
    assert result.manifest["seed_source"] == "random"


def test_same_seed_same_files(tmp_path: Path) -> None:
    one = _build(tmp_path / "a", tool_logs(60))
    two = _build(tmp_path / "b", tool_logs(60))
    assert {k: v["sha256"] for k, v in one.manifest["files"].items()} == {
        k: v["sha256"] for k, v in two.manifest["files"].items()
    }


def test_time_split_puts_newest_in_eval(tmp_path: Path) -> None:
    result = _build(tmp_path, tool_logs(60), config=job_config(split_strategy="time"))
    assert result.manifest["split_strategy"] == "time"
    evals = _lines(tmp_path / "eval.jsonl")
    numbers = sorted(int(r["request"]["messages"][-1]["content"].split()[2]) for r in evals)
    assert numbers == [55, 56, 57, 58, 59]
