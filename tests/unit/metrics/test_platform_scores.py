"""A platform's own aggregate scores are kept beside our recomputation, and differences flagged."""

from __future__ import annotations

import pytest

from flywheel.config.schema import CandidateModel, EvaluationConfig, JobConfig
from flywheel.platforms.base import EvaluationOutcome, ItemPrediction
from flywheel.workflow.scoring import beside_platform_scores, score_llm_eval, score_retrieval_eval

CANDIDATE = CandidateModel(name="small")
CONFIG = JobConfig(
    candidates=[CANDIDATE], evaluation_config=EvaluationConfig(bootstrap_samples=100)
)


def _call(name: str) -> dict[str, object]:
    return {
        "role": "assistant",
        "tool_calls": [{"type": "function", "function": {"name": name, "arguments": "{}"}}],
    }


def test_llm_scores_keep_the_platform_value_and_flag_a_difference() -> None:
    references = [_call("get_weather"), _call("book_table")]
    outcome = EvaluationOutcome(
        # The platform claims 0.8; the per-item answers get one of two right.
        platform_scores={"function_name_accuracy": 0.8, "platform_only": 0.3},
        predictions=[
            ItemPrediction(index=0, response=_call("get_weather")),
            ItemPrediction(index=1, response=_call("get_weather")),
        ],
    )
    scores, _ = score_llm_eval(
        outcome=outcome,
        references=references,
        candidate=CANDIDATE,
        config=CONFIG,
        tool_calling=True,
    )
    name = scores["function_name_accuracy"]
    assert name["value"] == 0.5
    assert name["source"] == "flywheel"
    assert name["platform_value"] == 0.8
    assert name["differs"] is True
    assert name["ci_low"] is not None  # ours keeps its interval
    assert scores["platform_only"] == {"value": 0.3, "source": "platform"}
    assert "platform_value" not in scores["function_name_and_args_accuracy"]


def test_agreeing_scores_are_not_flagged() -> None:
    merged = beside_platform_scores(
        {"recall@5": {"value": 0.75, "ci_low": 0.5}}, {"recall@5": 0.75}
    )
    assert merged["recall@5"]["differs"] is False
    assert merged["recall@5"]["platform_value"] == 0.75


def test_without_per_item_results_only_the_platform_speaks() -> None:
    outcome = EvaluationOutcome(platform_scores={"recall@5": 0.6, "ndcg@10": 0.4})
    scores = score_retrieval_eval(outcome=outcome, qrels={"q1": {"d1"}}, config=CONFIG)
    assert scores == {
        "recall@5": {"value": 0.6, "source": "platform"},
        "ndcg@10": {"value": 0.4, "source": "platform"},
    }


def test_retrieval_rankings_are_rescored_beside_the_platform() -> None:
    outcome = EvaluationOutcome(
        platform_scores={"ndcg@10": 0.9},
        rankings={"q1": ["d2", "d1"], "q2": ["d3"]},
    )
    scores = score_retrieval_eval(
        outcome=outcome, qrels={"q1": {"d1"}, "q2": {"d3"}}, config=CONFIG
    )
    assert scores["mrr@10"]["value"] == pytest.approx((1 / 2 + 1) / 2)
    assert scores["ndcg@10"]["source"] == "flywheel"
    assert scores["ndcg@10"]["differs"] is True
    assert scores["ndcg@10"]["platform_value"] == 0.9
