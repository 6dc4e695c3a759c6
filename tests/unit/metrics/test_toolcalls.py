"""Tool-call parsing, comparison, per-tool breakdown and confusion table."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flywheel.domain.metrics.toolcalls import (
    NO_CALL,
    canonical,
    confusion_pairs,
    evaluate_tool_calls,
    group_by_reference_tool,
    parse_tool_calls,
    score_tool_calls,
)


def call(name: str, args: Any = None, *, raw: bool = False) -> dict[str, Any]:
    arguments = args if raw else orjson.dumps(args if args is not None else {}).decode()
    return {"id": "x", "type": "function", "function": {"name": name, "arguments": arguments}}


def msg(*calls: dict[str, Any]) -> dict[str, Any]:
    return {"role": "assistant", "content": None, "tool_calls": list(calls)}


TEXT = {"role": "assistant", "content": "hello"}


def test_identical_calls_are_correct() -> None:
    s = score_tool_calls(msg(call("get", {"id": 1})), msg(call("get", {"id": 1})))
    assert s.name_correct
    assert s.name_and_args_correct
    assert s.format_valid


def test_argument_key_order_is_ignored() -> None:
    ref = msg(call("f", raw=True, args='{"a": 1, "b": "x"}'))
    pred = msg(call("f", raw=True, args='{"b": "x", "a": 1}'))
    assert score_tool_calls(ref, pred).name_and_args_correct


def test_numbers_compare_by_value() -> None:
    ref = msg(call("f", raw=True, args='{"n": 1}'))
    pred = msg(call("f", raw=True, args='{"n": 1.0}'))
    assert score_tool_calls(ref, pred).name_and_args_correct


@pytest.mark.parametrize(
    ("ref_args", "pred_args"),
    [
        ('{"n": 1}', '{"n": true}'),  # JSON true is not 1
        ('{"n": 1}', '{"n": "1"}'),  # a string is not a number
        ('{"n": 1.5}', '{"n": 1}'),
        ('{"a": [1, 2]}', '{"a": [2, 1]}'),  # list order matters inside arguments
        ('{"a": 1}', '{"a": 1, "b": 2}'),  # extra argument
        ('{"a": 1, "b": 2}', '{"a": 1}'),  # missing argument
    ],
)
def test_argument_mismatches(ref_args: str, pred_args: str) -> None:
    s = score_tool_calls(
        msg(call("f", raw=True, args=ref_args)), msg(call("f", raw=True, args=pred_args))
    )
    assert s.name_correct
    assert not s.name_and_args_correct


def test_nested_arguments_compare_deeply_and_ignore_key_order() -> None:
    ref = {"filter": {"range": {"lo": 1, "hi": 2.0}, "tags": ["a", {"k": None}]}}
    pred = {"filter": {"tags": ["a", {"k": None}], "range": {"hi": 2, "lo": 1.0}}}
    assert score_tool_calls(msg(call("f", ref)), msg(call("f", pred))).name_and_args_correct
    pred["filter"]["tags"][1] = {"k": 0}  # type: ignore[index]
    assert not score_tool_calls(msg(call("f", ref)), msg(call("f", pred))).name_and_args_correct


def test_arguments_as_object_or_string_are_equivalent() -> None:
    ref = msg(call("f", raw=True, args='{"a": 1}'))
    pred = msg(call("f", raw=True, args={"a": 1}))
    assert score_tool_calls(ref, pred).name_and_args_correct


@pytest.mark.parametrize("missing", [None, "", "  "])
def test_missing_or_empty_arguments_mean_empty_object(missing: Any) -> None:
    pred = msg({"type": "function", "function": {"name": "f", "arguments": missing}})
    s = score_tool_calls(msg(call("f", {})), pred)
    assert s.format_valid
    assert s.name_and_args_correct


def test_no_arguments_key_at_all() -> None:
    pred = msg({"type": "function", "function": {"name": "f"}})
    assert score_tool_calls(msg(call("f", {})), pred).name_and_args_correct


def test_invalid_json_is_a_format_error_and_wrong_args_but_name_counts() -> None:
    pred = msg(call("f", raw=True, args='{"a": 1'))
    s = score_tool_calls(msg(call("f", {"a": 1})), pred)
    assert not s.format_valid
    assert s.name_correct
    assert not s.name_and_args_correct
    assert any("not valid JSON" in e for e in s.errors)


@pytest.mark.parametrize("args", ["[1, 2]", "3", '"text"', "null", "NaN"])
def test_arguments_must_decode_to_an_object(args: str) -> None:
    parsed = parse_tool_calls(msg(call("f", raw=True, args=args)))
    assert not parsed.format_valid


def test_missing_name_is_format_error_and_wrong() -> None:
    pred = msg({"type": "function", "function": {"arguments": "{}"}})
    s = score_tool_calls(msg(call("f")), pred)
    assert not s.format_valid
    assert not s.name_correct
    assert s.predicted_names == ("<invalid>",)


def test_wrong_type_is_a_format_error() -> None:
    pred = msg({"type": "code", "function": {"name": "f", "arguments": "{}"}})
    assert not parse_tool_calls(pred).format_valid


def test_tool_calls_not_a_list_is_format_error() -> None:
    assert not parse_tool_calls({"role": "assistant", "tool_calls": "f()"}).format_valid


def test_legacy_function_call_is_read() -> None:
    legacy = {"role": "assistant", "function_call": {"name": "f", "arguments": '{"a": 1}'}}
    assert score_tool_calls(msg(call("f", {"a": 1})), legacy).name_and_args_correct


def test_both_without_calls_is_correct() -> None:
    s = score_tool_calls(TEXT, {"role": "assistant", "content": "different"})
    assert s.name_correct
    assert s.name_and_args_correct
    assert s.format_valid
    assert s.tools == (NO_CALL,)


def test_missing_candidate_response_is_no_call() -> None:
    s = score_tool_calls(msg(call("f")), None)
    assert not s.name_correct
    assert s.format_valid
    assert score_tool_calls(TEXT, None).name_correct


def test_call_where_none_expected_is_wrong() -> None:
    assert not score_tool_calls(TEXT, msg(call("f"))).name_correct


def test_parallel_calls_are_a_multiset() -> None:
    a, b = call("a"), call("b")
    assert not score_tool_calls(msg(a, a, b), msg(a, b, b)).name_correct
    assert score_tool_calls(msg(a, a, b), msg(b, a, a)).name_and_args_correct
    assert not score_tool_calls(msg(a, b), msg(a)).name_correct


def test_parallel_calls_same_name_args_matched_as_multiset() -> None:
    ref = msg(call("get", {"id": 1}), call("get", {"id": 2}))
    assert score_tool_calls(
        ref, msg(call("get", {"id": 2}), call("get", {"id": 1}))
    ).name_and_args_correct
    s = score_tool_calls(ref, msg(call("get", {"id": 1}), call("get", {"id": 1})))
    assert s.name_correct
    assert not s.name_and_args_correct


def test_names_are_case_sensitive() -> None:
    assert not score_tool_calls(msg(call("Get")), msg(call("get"))).name_correct


def test_canonical_rejects_non_json() -> None:
    with pytest.raises(TypeError):
        canonical({1, 2})


def test_confusion_pairs() -> None:
    assert confusion_pairs([], []) == [(NO_CALL, NO_CALL)]
    assert confusion_pairs(["a"], []) == [("a", NO_CALL)]
    assert confusion_pairs([], ["b"]) == [(NO_CALL, "b")]
    assert confusion_pairs(["a", "b"], ["b", "c"]) == [("b", "b"), ("a", "c")]
    assert confusion_pairs(["a", "a", "b"], ["a", "b", "b"]) == [("a", "a"), ("b", "b"), ("a", "b")]


def test_evaluate_report_values_breakdown_and_confusion() -> None:
    refs = [
        msg(call("weather", {"city": "Paris"})),
        msg(call("weather", {"city": "Rome"})),
        msg(call("search", {"q": "x"})),
        msg(call("weather", {"city": "Oslo"}), call("search", {"q": "y"})),
        TEXT,
    ]
    preds = [
        msg(call("weather", {"city": "Paris"})),  # all right
        msg(call("weather", {"city": "Milan"})),  # name right, args wrong
        msg(call("weather", {"city": "x"})),  # wrong tool
        msg(call("search", {"q": "y"}), call("weather", {"city": "Oslo"})),  # right, reordered
        msg(call("search", raw=True, args="{bad")),  # call where none expected, bad JSON
    ]
    report = evaluate_tool_calls(refs, preds, n_resamples=200)
    assert report.function_name_accuracy.value == pytest.approx(3 / 5)
    assert report.function_name_and_args_accuracy.value == pytest.approx(2 / 5)
    assert report.format_validity_rate.value == pytest.approx(4 / 5)
    assert report.function_name_accuracy.n == 5
    assert set(report.per_tool) == {"weather", "search", NO_CALL}
    weather = report.per_tool["weather"]
    assert weather.item_indices == (0, 1, 3)
    assert weather.function_name_accuracy.value == pytest.approx(1.0)
    assert weather.function_name_and_args_accuracy.value == pytest.approx(2 / 3)
    search = report.per_tool["search"]
    assert search.item_indices == (2, 3)
    assert search.function_name_accuracy.value == pytest.approx(0.5)
    assert report.per_tool[NO_CALL].function_name_accuracy.value == 0.0
    assert report.confusion == {
        "<none>": {"search": 1},
        "search": {"search": 1, "weather": 1},
        "weather": {"weather": 3},
    }
    assert report.per_item("function_name_and_args_accuracy") == [1.0, 0.0, 0.0, 1.0, 0.0]
    as_json = orjson.loads(orjson.dumps(report.to_dict()))
    assert as_json["function_name_accuracy"]["n"] == 5
    assert {"reference": "search", "predicted": "weather", "count": 1} in as_json["confusion"]


def test_evaluate_requires_equal_lengths_and_handles_empty() -> None:
    with pytest.raises(ValueError, match="one prediction per reference"):
        evaluate_tool_calls([TEXT], [])
    empty = evaluate_tool_calls([], [])
    assert empty.function_name_accuracy.n == 0
    assert empty.function_name_accuracy.value is None
    with pytest.raises(KeyError):
        empty.per_item("nope")


def test_group_by_reference_tool_counts_multi_tool_items_in_each() -> None:
    items = [
        score_tool_calls(msg(call("a"), call("b"), call("a")), None),
        score_tool_calls(TEXT, None),
    ]
    assert group_by_reference_tool(items) == {"<none>": (1,), "a": (0,), "b": (0,)}


# --- properties -------------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-1000, 1000), st.floats(-1e6, 1e6), st.text(max_size=5)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)
calls_strategy = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),
        st.dictionaries(st.text(max_size=3), json_values, max_size=3),
    ),
    max_size=4,
)


def as_message(calls: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    return msg(*(call(name, args) for name, args in calls)) if calls else TEXT


@given(calls_strategy, st.randoms(use_true_random=False))
def test_permutation_invariance(calls: list[tuple[str, dict[str, Any]]], rnd: Any) -> None:
    shuffled = list(calls)
    rnd.shuffle(shuffled)
    s = score_tool_calls(as_message(calls), as_message(shuffled))
    assert s.name_correct
    assert s.name_and_args_correct


@given(st.lists(st.tuples(calls_strategy, calls_strategy), max_size=8))
def test_accuracies_are_in_unit_interval(pairs: list[Any]) -> None:
    report = evaluate_tool_calls(
        [as_message(r) for r, _ in pairs], [as_message(p) for _, p in pairs], n_resamples=50
    )
    for score in (report.function_name_accuracy, report.function_name_and_args_accuracy):
        if score.n:
            assert score.value is not None
            assert 0.0 <= score.value <= 1.0
            assert score.ci_low is not None
            assert score.ci_high is not None
            assert 0.0 <= score.ci_low <= score.value <= score.ci_high <= 1.0
        # args-correct implies name-correct, item by item
    for item in report.items:
        assert item.name_correct or not item.name_and_args_correct
