"""Shape checks, per-record classification and the quality filters' reason codes."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from flywheel.domain.datasets.records import NO_TOOL, DropReason, ParsedRecord, parse_record
from tests.unit.datasets.factories import chat


def _parse(request: dict[str, Any], response: dict[str, Any]) -> ParsedRecord | DropReason:
    return parse_record(1, request, response)


def test_generic_record_parses() -> None:
    parsed = _parse(*chat("hello there"))
    assert isinstance(parsed, ParsedRecord)
    assert parsed.label == NO_TOOL
    assert not parsed.tool_calling
    assert parsed.user_text == "hello there"


def test_tool_call_is_parsed_to_objects_and_labelled() -> None:
    parsed = _parse(*chat("weather?", call="get_weather", arguments={"x": "Paris"}))
    assert isinstance(parsed, ParsedRecord)
    assert parsed.tool_calling
    assert parsed.label == "get_weather"
    assert parsed.calls[0].arguments == {"x": "Paris"}


def test_request_offering_tools_is_tool_calling_even_without_a_call() -> None:
    parsed = _parse(*chat("just chat", tools=["a", "b"]))
    assert isinstance(parsed, ParsedRecord)
    assert parsed.tool_calling
    assert parsed.label == NO_TOOL


def test_parallel_calls_label_is_sorted_set_of_names() -> None:
    request, response = chat("two things", call="b", tools=["a", "b"])
    calls = response["choices"][0]["message"]["tool_calls"]
    calls.append({"type": "function", "function": {"name": "a", "arguments": "{}"}})
    calls.append({"type": "function", "function": {"name": "b", "arguments": "{}"}})
    parsed = _parse(request, response)
    assert isinstance(parsed, ParsedRecord)
    assert parsed.label == "a+b"


def _mutate(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    request, response = chat("hi", call="f")
    message = response["choices"][0]["message"]
    if path == "error":
        response["error"] = {"message": "boom"}
    elif path == "no_choices":
        response["choices"] = []
    elif path == "length":
        response["choices"][0]["finish_reason"] = "length"
    elif path == "empty":
        response["choices"][0]["message"] = {"role": "assistant", "content": "  "}
    elif path == "bad_json":
        message["tool_calls"][0]["function"]["arguments"] = "{not json"
    elif path == "non_object_args":
        message["tool_calls"][0]["function"]["arguments"] = "[1, 2]"
    elif path == "unknown_tool":
        message["tool_calls"][0]["function"]["name"] = "g"
    elif path == "no_tools_offered":
        del request["tools"]
    elif path == "no_user":
        request["messages"] = [{"role": "system", "content": "sys"}]
    elif path == "blank_user":
        request["messages"][1]["content"] = "   "
    elif path == "bad_role":
        request["messages"][0]["role"] = "wizard"
    elif path == "no_model":
        del request["model"]
    elif path == "bad_temperature":
        request["temperature"] = "hot"
    elif path == "bad_call_type":
        message["tool_calls"][0]["type"] = 3
    return request, response


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("error", DropReason.error_response),
        ("no_choices", DropReason.error_response),
        ("length", DropReason.truncated),
        ("empty", DropReason.empty_response),
        ("bad_json", DropReason.invalid_tool_arguments),
        ("non_object_args", DropReason.invalid_tool_arguments),
        ("unknown_tool", DropReason.unknown_tool),
        ("no_tools_offered", DropReason.unknown_tool),
        ("no_user", DropReason.no_user_message),
        ("blank_user", DropReason.no_user_message),
        ("bad_role", DropReason.invalid_shape),
        ("no_model", DropReason.invalid_shape),
        ("bad_temperature", DropReason.invalid_shape),
        ("bad_call_type", DropReason.invalid_shape),
    ],
)
def test_each_filter_has_its_reason(path: str, reason: DropReason) -> None:
    assert _parse(*_mutate(path)) is reason


def test_parsing_never_mutates_the_logged_record() -> None:
    request, response = chat("hi", call="f", arguments={"x": "1"})
    before = copy.deepcopy((request, response))
    _parse(request, response)
    assert (request, response) == before


def test_multimodal_user_text_parts_count_as_user_text() -> None:
    request, response = chat("x")
    request["messages"][1]["content"] = [
        {"type": "text", "text": "describe"},
        {"type": "image_url", "image_url": {"url": "http://x/y.png"}},
    ]
    parsed = _parse(request, response)
    assert isinstance(parsed, ParsedRecord)
    assert parsed.user_text == "describe"
