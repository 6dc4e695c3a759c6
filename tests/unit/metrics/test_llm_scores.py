"""The scores of an LLM evaluation carry the tool-call confusion table to the API."""

from __future__ import annotations

from typing import Any

import pytest

from flywheel.config.schema import CandidateModel, EvaluationConfig, JobConfig
from flywheel.domain.metrics.toolcalls import NO_CALL
from flywheel.platforms.base import EvaluationOutcome, ItemPrediction
from flywheel.workflow.scoring import confusion_rows, score_llm_eval

CANDIDATE = CandidateModel(name="small")
CONFIG = JobConfig(
    candidates=[CANDIDATE], evaluation_config=EvaluationConfig(bootstrap_samples=100)
)


def _call(*names: str) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": f"c{i}", "type": "function", "function": {"name": n, "arguments": "{}"}}
            for i, n in enumerate(names)
        ],
    }


def _text() -> dict[str, Any]:
    return {"role": "assistant", "content": "hello"}


def _score(references: list[dict[str, Any]], answers: list[dict[str, Any] | None]) -> Any:
    outcome = EvaluationOutcome(
        predictions=[
            ItemPrediction(index=i, response=a) for i, a in enumerate(answers) if a is not None
        ]
    )
    scores, _ = score_llm_eval(
        outcome=outcome,
        references=references,
        candidate=CANDIDATE,
        config=CONFIG,
        tool_calling=True,
    )
    return scores


def test_scores_include_the_confusion_table() -> None:
    references = [_call("weather"), _call("weather"), _call("book"), _text(), _call("book")]
    answers = [_call("weather"), _call("book"), _call("book"), _call("weather"), None]
    scores = _score(references, answers)
    rows = {(r["reference"], r["predicted"]): r["count"] for r in scores["confusion"]}
    assert rows == {
        ("weather", "weather"): 1,
        ("weather", "book"): 1,
        ("book", "book"): 1,
        ("book", NO_CALL): 1,  # no answer at all counts as no call
        (NO_CALL, "weather"): 1,
    }
    assert sum(rows.values()) == len(references)
    assert scores["function_name_accuracy"]["value"] == 0.4


def test_the_confusion_rows_are_json_ready_and_ordered_like_the_table() -> None:
    rows = confusion_rows({"a": {"a": 3, "b": 1}, "b": {NO_CALL: 2}})
    assert rows == [
        {"reference": "a", "predicted": "a", "count": 3},
        {"reference": "a", "predicted": "b", "count": 1},
        {"reference": "b", "predicted": NO_CALL, "count": 2},
    ]


def test_generic_workloads_have_no_confusion_table() -> None:
    outcome = EvaluationOutcome(predictions=[ItemPrediction(index=0, response=_text())])
    scores, _ = score_llm_eval(
        outcome=outcome,
        references=[_text()],
        candidate=CANDIDATE,
        config=CONFIG,
        tool_calling=False,
    )
    assert "confusion" not in scores


def _judged(
    replies: list[str | None], *, tool_calling: bool, references: list[dict[str, Any]]
) -> tuple[dict[str, Any], Any]:
    outcome = EvaluationOutcome(
        predictions=[
            ItemPrediction(index=i, response=ref, judge_reply=reply)
            for i, (ref, reply) in enumerate(zip(references, replies, strict=True))
        ]
    )
    return score_llm_eval(
        outcome=outcome,
        references=references,
        candidate=CANDIDATE,
        config=CONFIG,
        tool_calling=tool_calling,
    )


def test_a_tool_workload_reports_the_correctness_judge_with_ci_and_failures() -> None:
    references = [_call("weather"), _call("book"), _call("book"), _call("weather")]
    scores, gate = _judged(
        ["RATING: 1", "RATING: 0", "RATING: 7", "RATING: 1"],
        tool_calling=True,
        references=references,
    )
    judged = scores["judge_tool_call_correctness"]
    assert judged["value"] == pytest.approx(2 / 3)
    assert judged["n"] == 3
    assert judged["parse_failures"] == 1  # "7" is no 0/1 verdict: counted, not scored 0
    assert judged["ci_low"] <= judged["value"] <= judged["ci_high"]
    assert "judge_similarity" not in scores
    # Gated on the exact-match accuracies; the judge is reported beside them.
    assert set(gate.metrics) == {"function_name_accuracy", "function_name_and_args_accuracy"}


def test_a_generic_workload_keeps_the_similarity_judge_and_gates_on_it() -> None:
    references = [_text(), _text()]
    scores, gate = _judged(["RATING: 10", "RATING: 1"], tool_calling=False, references=references)
    assert scores["judge_similarity"]["value"] == pytest.approx(0.5)
    assert scores["judge_similarity"]["parse_failures"] == 0
    assert "judge_tool_call_correctness" not in scores
    assert set(gate.metrics) == {"judge_similarity"}


def test_the_judge_replies_are_parsed_with_the_rubric_the_eval_set_was_judged_by(
    tmp_path: Any,
) -> None:
    """A tool workload whose eval split happens to hold no tool rows was judged for similarity
    (the platform decides from the set itself), so its replies must not be read as 0/1."""
    import orjson

    from flywheel.workflow.scoring import judged_as_tool_calling_file

    rows = [
        {
            "request": {"messages": [{"role": "user", "content": "hi"}]},
            "response": {"choices": [{"message": _text()}]},
        }
    ] * 3
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n")
    judge_tools = judged_as_tool_calling_file(eval_file)
    assert judge_tools is False
    outcome = EvaluationOutcome(
        predictions=[
            ItemPrediction(index=i, response=_text(), judge_reply="RATING: 7") for i in range(3)
        ]
    )
    scores, _ = score_llm_eval(
        outcome=outcome,
        references=[_text()] * 3,
        candidate=CANDIDATE,
        config=CONFIG,
        tool_calling=True,  # the workload offers tools elsewhere in its traffic
        judge_tool_calling=judge_tools,
    )
    assert "judge_tool_call_correctness" not in scores
    assert scores["judge_similarity"]["value"] == pytest.approx(6 / 9)  # (7 - 1) / 9
    assert scores["judge_similarity"]["parse_failures"] == 0
    tool_row = {
        "request": {"messages": [], "tools": [{"type": "function", "function": {"name": "a"}}]},
        "response": {"choices": [{"message": _text()}]},
    }
    eval_file.write_bytes(orjson.dumps(tool_row) + b"\n")
    assert judged_as_tool_calling_file(eval_file) is True
    called = {"request": {"messages": []}, "response": {"choices": [{"message": _call("a")}]}}
    eval_file.write_bytes(orjson.dumps(called) + b"\n")
    assert judged_as_tool_calling_file(eval_file) is True
