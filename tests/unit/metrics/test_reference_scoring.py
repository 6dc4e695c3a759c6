"""The production retriever's reference row: its ranking scored like a candidate's."""

from __future__ import annotations

import math
from pathlib import Path

import orjson
import pytest

from flywheel.config.schema import CandidateModel, EvaluationConfig, JobConfig
from flywheel.platforms.base import EvaluationOutcome
from flywheel.workflow.scoring import (
    REFERENCE_NAME,
    read_qrels,
    read_reference_run,
    reference_row,
    score_reference_run,
    score_retrieval_eval,
)

CONFIG = JobConfig(
    candidates=[CandidateModel(name="embedder", model_type="embedding")],
    evaluation_config=EvaluationConfig(bootstrap_samples=200),
)
# Three eval queries with a production ranking, and q4 without one.
QRELS = {"q1": {"d1"}, "q2": {"d2", "d5"}, "q3": {"d9"}, "q4": {"d4"}}
RUN = {
    "q1": ["d1", "d3", "d4"],  # hit at rank 1
    "q2": ["d3", "d2", "d4", "d6", "d7", "d5"],  # hits at ranks 2 and 6
    "q3": ["d7", "d8"],  # miss
    "q4": [],  # logged without ranks: no ranking
    "q9": ["d1"],  # not an eval query
}


def test_three_query_example_matches_hand_computed_values() -> None:
    row, missing = score_reference_run(run=RUN, qrels=QRELS, config=CONFIG)
    assert missing is None
    assert row is not None
    assert row["name"] == REFERENCE_NAME == "production retriever"
    assert (row["queries"], row["eval_queries"], row["excluded_queries"]) == (3, 4, 1)
    m = row["metrics"]
    assert set(m) == {"recall@1", "recall@5", "recall@10", "ndcg@10", "mrr@10"}
    # recall@1: q1 1, q2 0, q3 0; recall@5: q2 finds d2 of {d2, d5}; recall@10: both.
    assert m["recall@1"]["value"] == pytest.approx(1 / 3)
    assert m["recall@5"]["value"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert m["recall@10"]["value"] == pytest.approx(2 / 3)
    # MRR@10: 1, 1/2, 0.
    assert m["mrr@10"]["value"] == pytest.approx(0.5)
    # nDCG@10 of q2: (1/log2(3) + 1/log2(7)) / (1 + 1/log2(3)) = 0.60526.
    q2 = (1 / math.log2(3) + 1 / math.log2(7)) / (1 + 1 / math.log2(3))
    assert q2 == pytest.approx(0.60526, abs=1e-5)
    assert m["ndcg@10"]["value"] == pytest.approx((1 + q2 + 0) / 3)
    for score in m.values():
        assert score["n"] == 3
        assert score["confidence"] == 0.95
        assert score["ci_low"] <= score["value"] <= score["ci_high"]
    # Per-query values differ, so every interval has width.
    assert m["mrr@10"]["ci_low"] < m["mrr@10"]["ci_high"]


def test_row_equals_a_candidate_with_the_same_ranking() -> None:
    """Same metrics, cut-offs and bootstrap as the candidates: the row is comparable."""
    covered = {q: QRELS[q] for q in ("q1", "q2", "q3")}
    row, _ = score_reference_run(run=RUN, qrels=QRELS, config=CONFIG)
    as_candidate = score_retrieval_eval(
        outcome=EvaluationOutcome(rankings=RUN), qrels=covered, config=CONFIG
    )
    assert row is not None
    assert row["metrics"] == as_candidate


def test_recall_cutoffs_follow_the_embedding_config() -> None:
    config = CONFIG.model_copy(
        update={"embedding_config": CONFIG.embedding_config.model_copy(update={"recall_k": [2]})}
    )
    row, _ = score_reference_run(run=RUN, qrels=QRELS, config=config)
    assert row is not None
    assert set(row["metrics"]) == {"recall@2", "ndcg@10", "mrr@10"}
    assert row["metrics"]["recall@2"]["value"] == pytest.approx((1 + 0.5 + 0) / 3)


def test_no_ranking_for_any_eval_query_gives_no_row_and_says_why() -> None:
    row, missing = score_reference_run(run={"q4": [], "q9": ["d1"]}, qrels=QRELS, config=CONFIG)
    assert row is None
    assert missing is not None
    assert "retriever ranks or scores" in missing
    assert "`rank` or `score`" in missing


def test_missing_file_gives_no_row_and_says_why(tmp_path: Path) -> None:
    assert read_reference_run(tmp_path) is None
    row, missing = score_reference_run(run=None, qrels=QRELS, config=CONFIG)
    assert row is None
    assert missing is not None
    assert "reference_run.json" in missing


def test_reads_the_files_the_dataset_step_writes(tmp_path: Path) -> None:
    (tmp_path / "reference_run.json").write_bytes(orjson.dumps(RUN))
    qrels_dir = tmp_path / "eval" / "qrels"
    qrels_dir.mkdir(parents=True)
    lines = ["query-id\tcorpus-id\tscore"] + [
        f"{q}\t{d}\t1" for q, docs in sorted(QRELS.items()) for d in sorted(docs)
    ]
    (qrels_dir / "test.tsv").write_text("\n".join(lines) + "\n")
    run = read_reference_run(tmp_path)
    assert run == RUN
    row, _ = score_reference_run(run=run, qrels=read_qrels(tmp_path / "eval"), config=CONFIG)
    assert row is not None
    assert row["metrics"]["mrr@10"]["value"] == pytest.approx(0.5)


def test_a_malformed_file_names_the_file_and_the_fix(tmp_path: Path) -> None:
    (tmp_path / "reference_run.json").write_bytes(b"[1, 2]")
    with pytest.raises(ValueError, match=r"reference_run\.json.*rebuild"):
        read_reference_run(tmp_path)


def test_a_corrupt_file_costs_the_row_not_the_job(tmp_path: Path) -> None:
    (tmp_path / "reference_run.json").write_bytes(b'{"q1": ["d1"')
    row, missing = reference_row(datasets_root=tmp_path, qrels=QRELS, config=CONFIG)
    assert row is None
    assert missing is not None
    assert "not valid JSON" in missing
    assert "rebuild" in missing
    (tmp_path / "reference_run.json").write_bytes(orjson.dumps(RUN))
    row, missing = reference_row(datasets_root=tmp_path, qrels=QRELS, config=CONFIG)
    assert missing is None
    assert row is not None
    assert row["queries"] == 3
