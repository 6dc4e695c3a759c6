"""File rows: DFW eval, OpenAI SFT, ICL insertion; fast byte rendering equals the dict form."""

from __future__ import annotations

import copy

import orjson
import pytest

from flywheel.domain.datasets.formats import (
    ICL_TOOL_RESULT,
    eval_item,
    eval_line,
    example_turns,
    icl_item,
    sft_item,
    sft_line,
)
from flywheel.domain.datasets.records import ParsedRecord, parse_record
from tests.unit.datasets.factories import chat


def _parsed(*args: object, **kwargs: object) -> ParsedRecord:
    request, response = chat(*args, **kwargs)  # type: ignore[arg-type]
    parsed = parse_record(5, request, response)
    assert isinstance(parsed, ParsedRecord)
    return parsed


def test_sft_tool_call_row() -> None:
    row = sft_item(_parsed("weather?", call="get", arguments={"x": "Paris"}), parse_arguments=True)
    last = row["messages"][-1]
    assert last["role"] == "assistant"
    assert last["content"] == ""
    assert last["tool_calls"][0]["function"] == {"name": "get", "arguments": '{"x":"Paris"}'}
    assert row["tools"][0]["function"]["name"] == "get"
    assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]


def test_sft_generic_row_keeps_text_and_has_no_tools() -> None:
    row = sft_item(_parsed("hi", content="hello!"), parse_arguments=True)
    assert row["messages"][-1] == {"role": "assistant", "content": "hello!"}
    assert "tools" not in row


def test_sft_history_null_assistant_content_becomes_empty_and_args_strings() -> None:
    request, response = chat("again", call="f")
    history = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "h1", "type": "function", "function": {"name": "f", "arguments": {"x": 1}}}
        ],
    }
    request["messages"][1:1] = [{"role": "user", "content": "first"}, history]
    request["messages"].insert(3, {"role": "tool", "tool_call_id": "h1", "content": "42"})
    before = copy.deepcopy(request)
    parsed = parse_record(1, request, response)
    assert isinstance(parsed, ParsedRecord)
    row = sft_item(parsed, parse_arguments=True)
    assert row["messages"][2]["content"] == ""
    assert row["messages"][2]["tool_calls"][0]["function"]["arguments"] == '{"x":1}'
    ev = eval_item(parsed, parse_arguments=True)
    assert ev["request"]["messages"][2]["content"] is None  # eval keeps the logged request
    assert ev["request"]["messages"][2]["tool_calls"][0]["function"]["arguments"] == '{"x":1}'
    assert request == before  # immutable (D5)


def test_eval_row_is_dfw_request_response() -> None:
    parsed = _parsed("weather?", call="get", arguments={"x": "Paris"})
    row = eval_item(parsed, parse_arguments=True)
    assert set(row) == {"request", "response"}
    assert row["request"]["model"] == "prod"
    choice = row["response"]["choices"][0]
    assert choice["message"]["tool_calls"][0]["function"]["arguments"] == '{"x":"Paris"}'
    assert choice["finish_reason"] == "tool_calls"


@pytest.mark.parametrize("parse_arguments", [True, False])
def test_parse_function_arguments_controls_serialisation(parse_arguments: bool) -> None:
    parsed = _parsed("w", call="get", arguments='{ "x" : "P" }')
    args = sft_item(parsed, parse_arguments=parse_arguments)["messages"][-1]["tool_calls"][0]
    expected = '{"x":"P"}' if parse_arguments else '{ "x" : "P" }'
    assert args["function"]["arguments"] == expected
    assert parsed.calls[0].arguments == {"x": "P"}  # parsed for scoring either way


@pytest.mark.parametrize("kind", ["tool", "generic", "no_system"])
def test_fast_lines_equal_dict_rows(kind: str) -> None:
    if kind == "tool":
        parsed = _parsed("w", call="get", arguments={"x": "é"})
    elif kind == "generic":
        parsed = _parsed("w", content="plain")
    else:
        parsed = _parsed("w", system=False)
    assert orjson.loads(eval_line(parsed, parse_arguments=True)) == eval_item(
        parsed, parse_arguments=True
    )
    assert orjson.loads(sft_line(parsed, parse_arguments=True)) == sft_item(
        parsed, parse_arguments=True
    )


def test_icl_examples_go_after_system_and_tool_calls_are_answered() -> None:
    target = eval_item(_parsed("target question"), parse_arguments=True)
    example = sft_item(_parsed("example q", call="get"), parse_arguments=True)
    generic = sft_item(_parsed("other q", content="A"), parse_arguments=True)
    row = icl_item(target, [example_turns(example, index=0), example_turns(generic, index=1)])
    messages = row["request"]["messages"]
    assert [m["role"] for m in messages] == [
        "system",
        "user",
        "assistant",
        "tool",
        "user",
        "assistant",
        "user",
    ]
    assert messages[2]["tool_calls"][0]["id"] == messages[3]["tool_call_id"]
    assert messages[3]["content"] == ICL_TOOL_RESULT
    assert messages[-1]["content"] == "target question"
    assert row["response"] == target["response"]
