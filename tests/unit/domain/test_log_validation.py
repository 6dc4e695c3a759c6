"""Validation of raw log records: each problem is a RecordError naming the field and fix."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flywheel.domain.log_validation import (
    Accepted,
    RecordError,
    TimestampFormat,
    normalise_timestamp,
    validate_log_record,
)
from flywheel.domain.logs import ChatLog, RetrievalLog

NOW_MS = 1_750_000_000_000  # 2025-06-15


def chat_record(**overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "client_id": "aiva",
        "workload_id": "router",
        "timestamp": NOW_MS - 1000,
        "request": {
            "model": "meta/llama-3.1-70b-instruct",
            "messages": [
                {"role": "system", "content": "You route requests."},
                {"role": "user", "content": "Where is my order?"},
            ],
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "get_order",
                        "parameters": {"type": "object", "properties": {}},
                    },
                }
            ],
            "tool_choice": "auto",
            "temperature": 0.2,
            "max_tokens": 256,
        },
        "response": {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "tool_calls",
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "call_1",
                                "type": "function",
                                "function": {"name": "get_order", "arguments": '{"id": 7}'},
                            }
                        ],
                    },
                }
            ],
        },
    }
    record.update(overrides)
    return record


def retrieval_record(**overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "client_id": "aiva",
        "workload_id": "kb-search",
        "timestamp": NOW_MS - 1000,
        "query": "how do I reset my password",
        "retrieved": [
            {"doc_id": "d1", "text": "Go to settings.", "score": 0.9, "rank": 0},
            {"doc_id": "d2", "text": "Call support.", "score": 0.4, "rank": 1},
        ],
        "used_doc_ids": ["d1"],
    }
    record.update(overrides)
    return record


def check(raw: object, **kwargs: Any) -> Accepted | RecordError:
    return validate_log_record(raw, now_ms=NOW_MS, **kwargs)


def accepted(raw: object, **kwargs: Any) -> Accepted:
    result = check(raw, **kwargs)
    assert isinstance(result, Accepted), result
    return result


def rejected(raw: object, **kwargs: Any) -> RecordError:
    result = check(raw, **kwargs)
    assert isinstance(result, RecordError), result
    return result


# -- happy paths ----------------------------------------------------------------------------


def test_valid_chat_record_is_kept_as_sent() -> None:
    raw = chat_record()
    result = accepted(raw)
    assert isinstance(result.record, ChatLog)
    assert result.record.request == raw["request"]
    assert result.record.response == raw["response"]
    assert result.timestamp_format is TimestampFormat.epoch_ms
    assert result.timestamp_note is None
    assert result.ignored_fields == ()


def test_valid_retrieval_record() -> None:
    result = accepted(retrieval_record())
    assert isinstance(result.record, RetrievalLog)
    assert [p.doc_id for p in result.record.retrieved] == ["d1", "d2"]
    assert result.record.used_doc_ids == ["d1"]


def test_retrieval_accepts_id_alias_and_numeric_ids() -> None:
    raw = retrieval_record(
        retrieved=[{"id": 11, "text": "a"}, {"id": "x", "text": "b"}], used_doc_ids=[11]
    )
    record = accepted(raw).record
    assert isinstance(record, RetrievalLog)
    assert [p.doc_id for p in record.retrieved] == ["11", "x"]
    assert record.used_doc_ids == ["11"]


def test_explicit_kind_is_honoured() -> None:
    assert isinstance(accepted(chat_record(kind="chat")).record, ChatLog)
    err = rejected(chat_record(kind="retrieval"))
    assert err.field == "query"


def test_openai_model_dump_shape_with_nulls_is_accepted() -> None:
    raw = chat_record()
    message = raw["response"]["choices"][0]["message"]
    message.update({"refusal": None, "audio": None, "function_call": None, "annotations": None})
    raw["response"]["choices"][0]["logprobs"] = None
    raw["request"]["tools"] = None
    accepted(raw)


def test_content_parts_and_dict_arguments_are_accepted() -> None:
    raw = chat_record()
    raw["request"]["messages"][1]["content"] = [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "data:,"}},
    ]
    raw["response"]["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] = {"id": 7}
    accepted(raw)


def test_unknown_top_level_and_passage_fields_are_dropped_and_named() -> None:
    result = accepted(chat_record(trace_id="t-1", env="prod"))
    assert result.ignored_fields == ("env", "trace_id")
    raw = retrieval_record(retrieved=[{"doc_id": "d1", "text": "t", "url": "https://x"}])
    assert accepted(raw).ignored_fields == ("retrieved[].url",)


def test_id_overrides_fill_missing_ids_and_replace_others() -> None:
    raw = chat_record()
    del raw["client_id"], raw["workload_id"]
    result = accepted(raw, client_id="c1", workload_id="w1")
    assert (result.record.client_id, result.record.workload_id) == ("c1", "w1")
    assert not result.ids_overridden
    replaced = accepted(chat_record(), client_id="c1", workload_id="w1")
    assert replaced.ids_overridden
    assert replaced.record.client_id == "c1"


# -- timestamps -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "millis", "fmt"),
    [
        (NOW_MS, NOW_MS, TimestampFormat.epoch_ms),
        (float(NOW_MS) + 0.4, NOW_MS, TimestampFormat.epoch_ms),
        (NOW_MS // 1000, NOW_MS // 1000 * 1000, TimestampFormat.epoch_s),
        (1_700_000_000.25, 1_700_000_000_250, TimestampFormat.epoch_s),
        ("2024-05-01T12:00:00Z", 1_714_564_800_000, TimestampFormat.iso8601),
        ("2024-05-01T12:00:00", 1_714_564_800_000, TimestampFormat.iso8601),
        ("2024-05-01T14:00:00.5+02:00", 1_714_564_800_500, TimestampFormat.iso8601),
        ("2024-05-01", 1_714_521_600_000, TimestampFormat.iso8601),
        (0, 0, TimestampFormat.epoch_s),
    ],
)
def test_timestamps_normalise_to_millis(value: object, millis: int, fmt: TimestampFormat) -> None:
    assert normalise_timestamp(value, now_ms=NOW_MS) == (millis, fmt)


def test_seconds_timestamp_is_noted() -> None:
    result = accepted(chat_record(timestamp=1_700_000_000))
    assert result.record.timestamp == 1_700_000_000_000
    assert result.timestamp_note is not None
    assert result.timestamp_note.source is TimestampFormat.epoch_s
    assert result.timestamp_note.original == 1_700_000_000


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (-5, "negative"),
        (NOW_MS + 2 * 86_400_000, "future"),
        (NOW_MS * 1000, "micro- or nanoseconds"),
        (True, "got boolean"),
        ("yesterday", "not ISO-8601"),
        ("1700000000000", "not ISO-8601"),
        ([1], "got array"),
        (float("nan"), "finite"),
        (float("inf"), "finite"),
    ],
)
def test_bad_timestamps_are_rejected(value: object, reason: str) -> None:
    err = rejected(chat_record(timestamp=value))
    assert err.field == "timestamp"
    assert reason in err.reason


def test_missing_timestamp_names_formats() -> None:
    raw = chat_record()
    del raw["timestamp"]
    err = rejected(raw)
    assert err.field == "timestamp"
    assert "epoch milliseconds" in err.reason


# -- rejections -----------------------------------------------------------------------------

Mutator = Callable[[dict[str, Any]], None]


def _set(path: str, value: object) -> Mutator:
    def mutate(record: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = record
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        if last.isdigit():
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


def _delete(path: str) -> Mutator:
    def mutate(record: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = record
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        del node[last]

    return mutate


MSG = "request.messages"
RESP_MSG = "response.choices.0.message"
CALL = f"{RESP_MSG}.tool_calls.0"

BAD_CHAT: list[tuple[str, Mutator, str, str]] = [
    ("missing client_id", _delete("client_id"), "client_id", "--client-id"),
    ("null workload_id", _set("workload_id", None), "workload_id", "--workload-id"),
    ("id wrong type", _set("client_id", 42), "client_id", "must be a string"),
    ("id bad chars", _set("client_id", "a b/c"), "client_id", "not a valid id"),
    ("id too long", _set("workload_id", "w" * 200), "workload_id", "not a valid id"),
    ("request not object", _set("request", "hi"), "request", "JSON object"),
    ("missing response", _delete("response"), "response", "is missing"),
    ("missing model", _delete("request.model"), "request.model", "is missing"),
    ("model not string", _set("request.model", 3), "request.model", "string"),
    ("messages missing", _delete("request.messages"), MSG, "is missing"),
    ("messages not list", _set("request.messages", {}), MSG, "must be an array"),
    ("messages empty", _set("request.messages", []), MSG, "at least one"),
    ("message not object", _set(f"{MSG}.1", "hi"), f"{MSG}[1]", "JSON object"),
    ("unknown role", _set(f"{MSG}.1.role", "robot"), f"{MSG}[1].role", "not a chat role"),
    ("missing role", _delete(f"{MSG}.1.role"), f"{MSG}[1].role", "is missing"),
    ("content wrong type", _set(f"{MSG}.1.content", 5), f"{MSG}[1].content", "string"),
    ("user content null", _set(f"{MSG}.1.content", None), f"{MSG}[1].content", "needs content"),
    ("part no type", _set(f"{MSG}.1.content", [{"text": "x"}]), f"{MSG}[1].content[0].type", ""),
    ("tools not list", _set("request.tools", {"a": 1}), "request.tools", "array"),
    (
        "tool no name",
        _set("request.tools.0.function", {"parameters": {}}),
        "request.tools[0].function.name",
        "is missing",
    ),
    (
        "tool params not object",
        _set("request.tools.0.function.parameters", "x"),
        "request.tools[0].function.parameters",
        "JSON object",
    ),
    ("tool_choice bad", _set("request.tool_choice", "always"), "request.tool_choice", "not one"),
    ("temperature str", _set("request.temperature", "hot"), "request.temperature", "number"),
    ("max_tokens float", _set("request.max_tokens", 1.5), "request.max_tokens", "integer"),
    ("no choices", _delete("response.choices"), "response.choices", "is missing"),
    ("empty choices", _set("response.choices", []), "response.choices", "at least one"),
    ("choice no message", _delete(RESP_MSG), "response.choices[0].message", "is missing"),
    ("response role", _set(f"{RESP_MSG}.role", "user"), "response.choices[0].message.role", ""),
    (
        "args invalid json",
        _set(f"{CALL}.function.arguments", '{"id": 7'),
        "response.choices[0].message.tool_calls[0].function.arguments",
        "not valid JSON",
    ),
    (
        "args wrong type",
        _set(f"{CALL}.function.arguments", 7),
        "response.choices[0].message.tool_calls[0].function.arguments",
        "JSON-encoded string",
    ),
    (
        "call no name",
        _delete(f"{CALL}.function.name"),
        "response.choices[0].message.tool_calls[0].function.name",
        "is missing",
    ),
    (
        "empty assistant",
        _set(RESP_MSG, {"role": "assistant", "content": None}),
        "response.choices[0].message.content",
        "neither content nor tool_calls",
    ),
    ("kind unknown", _set("kind", "audio"), "kind", "not a log kind"),
]


@pytest.mark.parametrize(
    ("mutate", "field", "reason"), [c[1:] for c in BAD_CHAT], ids=[c[0] for c in BAD_CHAT]
)
def test_bad_chat_records_name_field_and_reason(mutate: Mutator, field: str, reason: str) -> None:
    raw = chat_record()
    mutate(raw)
    err = rejected(raw, index=3, line=9)
    assert (err.index, err.line, err.field) == (3, 9, field)
    assert reason in err.reason


def test_tool_message_needs_tool_call_id() -> None:
    raw = chat_record()
    raw["request"]["messages"].append({"role": "tool", "content": "{}"})
    err = rejected(raw)
    assert err.field == "request.messages[2].tool_call_id"


def test_tool_calls_only_on_assistant_messages() -> None:
    raw = chat_record()
    raw["request"]["messages"][1]["tool_calls"] = []
    assert rejected(raw).field == "request.messages[1].tool_calls"


BAD_RETRIEVAL: list[tuple[str, dict[str, Any], str, str]] = [
    ("no query", {"query": None}, "query", "string"),
    ("empty query", {"query": "  "}, "query", "empty"),
    ("retrieved not list", {"retrieved": "d1"}, "retrieved", "array"),
    ("passage no id", {"retrieved": [{"text": "t"}]}, "retrieved[0].doc_id", "missing"),
    ("passage no text", {"retrieved": [{"doc_id": "d"}]}, "retrieved[0].text", "string"),
    (
        "score str",
        {"retrieved": [{"doc_id": "d", "text": "t", "score": "hi"}], "used_doc_ids": []},
        "retrieved[0].score",
        "number",
    ),
    (
        "rank negative",
        {"retrieved": [{"doc_id": "d", "text": "t", "rank": -1}], "used_doc_ids": []},
        "retrieved[0].rank",
        "non-negative",
    ),
    ("used unknown", {"used_doc_ids": ["zz"]}, "used_doc_ids[0]", "not among"),
    ("used not list", {"used_doc_ids": "d1"}, "used_doc_ids", "array"),
    ("clicked unknown", {"clicked_doc_ids": ["zz"]}, "clicked_doc_ids[0]", "not among"),
    ("feedback str", {"feedback": "good"}, "feedback", "JSON object"),
]


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [c[1:] for c in BAD_RETRIEVAL],
    ids=[c[0] for c in BAD_RETRIEVAL],
)
def test_bad_retrieval_records(changes: dict[str, Any], field: str, reason: str) -> None:
    err = rejected(retrieval_record(**changes))
    assert err.field.startswith(field)
    assert reason in err.reason


@pytest.mark.parametrize(
    ("raw", "field", "reason"),
    [
        ([1, 2], "", "JSON object, got array"),
        ("text", "", "JSON object, got string"),
        (None, "", "JSON object, got null"),
        ({}, "", "neither request/response"),
        ({"request": {}, "query": "q"}, "kind", "both chat and retrieval"),
    ],
)
def test_records_of_the_wrong_shape(raw: object, field: str, reason: str) -> None:
    err = rejected(raw)
    assert err.field == field
    assert reason in err.reason


def test_record_error_renders() -> None:
    err = RecordError(index=2, line=5, field="timestamp", reason="is missing")
    assert err.to_dict() == {"index": 2, "line": 5, "field": "timestamp", "reason": "is missing"}
    assert str(err) == "line 5: timestamp: is missing"
    assert str(RecordError(index=2, line=None, field="", reason="x")) == "record 2: record: x"


def test_deeply_nested_value_does_not_crash() -> None:
    nested: Any = "x"
    for _ in range(5000):
        nested = [nested]
    raw = chat_record()
    raw["request"]["messages"][1]["content"] = [{"type": "text", "text": "t", "deep": nested}]
    assert isinstance(check(raw), Accepted)


# -- properties -----------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(raw=json_values)
def test_arbitrary_json_never_raises(raw: object) -> None:
    assert isinstance(check(raw), Accepted | RecordError)


@settings(max_examples=300, deadline=None)
@given(
    base=st.sampled_from([chat_record, retrieval_record]),
    path=st.sampled_from(
        [
            "client_id",
            "timestamp",
            "request",
            "request.messages",
            "request.messages.0",
            "request.messages.1.content",
            "request.tools",
            "request.tools.0.function",
            "response",
            "response.choices",
            "response.choices.0.message",
            "response.choices.0.message.tool_calls",
            "response.choices.0.message.tool_calls.0.function.arguments",
            "query",
            "retrieved",
            "used_doc_ids",
            "feedback",
            "kind",
        ]
    ),
    value=json_values,
)
def test_any_field_replaced_by_any_json_never_raises(
    base: Callable[[], dict[str, Any]], path: str, value: object
) -> None:
    raw = copy.deepcopy(base())
    try:
        _set(path, value)(raw)
    except (KeyError, IndexError, TypeError):
        return  # the path does not exist in this kind of record
    result = check(raw)
    assert isinstance(result, Accepted | RecordError)
    if isinstance(result, RecordError):
        assert result.reason
