"""Tools rendered into the system prompt, and tool calls read back from model text."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from flywheel.domain.metrics import parse_tool_calls, score_tool_calls
from flywheel.platforms.local.tool_prompt import (
    parse_reply,
    render_tool_calls,
    render_tools,
    to_plain_messages,
)

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def _call(name: str, arguments: dict[str, object]) -> dict[str, object]:
    return {
        "type": "function",
        "function": {"name": name, "arguments": orjson.dumps(arguments).decode()},
    }


def test_tools_go_into_the_system_prompt_in_the_documented_format() -> None:
    messages = to_plain_messages(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Paris?"}],
        [WEATHER],
    )
    system = messages[0]["content"]
    assert system.startswith("Be brief.\n\n# Tools")
    assert "<tools>\n" + orjson.dumps(WEATHER).decode() + "\n</tools>" in system
    assert "<tool_call>" in system
    assert messages[1] == {"role": "user", "content": "Paris?"}


def test_a_system_prompt_is_added_when_there_is_none() -> None:
    messages = to_plain_messages([{"role": "user", "content": "hi"}], [WEATHER])
    assert messages[0]["role"] == "system"
    assert messages[0]["content"] == render_tools([WEATHER])
    assert to_plain_messages([{"role": "user", "content": "hi"}], None) == [
        {"role": "user", "content": "hi"}
    ]


def test_history_tool_calls_and_results_become_plain_text() -> None:
    history: list[dict[str, Any]] = [
        {"role": "user", "content": "Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    plain = to_plain_messages(history, None)
    assert plain[1] == {
        "role": "assistant",
        "content": '<tool_call>\n{"name":"get_weather","arguments":{"city":"Paris"}}\n</tool_call>',
    }
    assert plain[2] == {"role": "user", "content": "<tool_response>\nsunny\n</tool_response>"}


@pytest.mark.parametrize(
    "calls",
    [
        [_call("get_weather", {"city": "Paris"})],
        [_call("get_weather", {"city": "Paris"}), _call("get_time", {"tz": "CET", "n": 1.5})],
        [_call("ping", {})],
    ],
)
def test_rendered_calls_parse_back_to_the_same_calls(calls: list[dict[str, object]]) -> None:
    text = render_tool_calls(calls)
    parsed = parse_reply(text)
    assert parsed.format_errors == 0
    reference = {"role": "assistant", "tool_calls": calls}
    score = score_tool_calls(reference, parsed.message)
    assert score.name_and_args_correct
    assert score.format_valid
    assert parsed.message["content"] is None


def test_plain_text_is_content() -> None:
    parsed = parse_reply("  The weather is sunny.  ")
    assert parsed.message == {"role": "assistant", "content": "The weather is sunny."}
    assert parsed.format_errors == 0


def test_content_around_a_call_is_kept() -> None:
    parsed = parse_reply(
        'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}'
        "\n</tool_call>"
    )
    assert parsed.message["content"] == "Let me check."
    assert [c["function"]["name"] for c in parsed.message["tool_calls"]] == ["get_weather"]


@pytest.mark.parametrize(
    "text",
    [
        '{"name": "get_weather", "arguments": {"city": "Paris"}}',  # bare JSON (Llama 3)
        '{"name": "get_weather", "parameters": {"city": "Paris"}}',
        '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}}]',  # Mistral
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"},}</tool_call>',
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}',  # cut off
        '<tool_call>{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}',
    ],
)
def test_tolerant_parser_reads_common_variants(text: str) -> None:
    parsed = parse_reply(text)
    assert parsed.format_errors == 0, parsed
    reference = {"role": "assistant", "tool_calls": [_call("get_weather", {"city": "Paris"})]}
    assert score_tool_calls(reference, parsed.message).name_and_args_correct


@pytest.mark.parametrize(
    ("text", "errors"),
    [
        ("<tool_call>\nget_weather(city='Paris')\n</tool_call>", 1),
        ('<tool_call>{"name": "get_weather", "arguments": [1, 2]}</tool_call>', 1),
        ('<tool_call>{"arguments": {"city": "Paris"}}</tool_call>', 1),
        (
            '<tool_call>{"name": "a", "arguments": {}}</tool_call>'
            "<tool_call>{'name': 'b', oops}</tool_call>",
            1,
        ),
    ],
)
def test_malformed_calls_are_counted_and_stay_visible_as_format_errors(
    text: str, errors: int
) -> None:
    parsed = parse_reply(text)
    assert parsed.format_errors == errors
    metrics_view = parse_tool_calls(parsed.message)
    assert not metrics_view.format_valid  # the metrics count it too, never "no call"


def test_a_broken_call_keeps_a_visible_name() -> None:
    parsed = parse_reply("<tool_call>{'name': 'b', oops}</tool_call>")
    assert parsed.message["tool_calls"][0]["function"]["name"] == "b"


def test_json_without_a_name_is_just_content() -> None:
    parsed = parse_reply('{"answer": 42}')
    assert parsed.message == {"role": "assistant", "content": '{"answer": 42}'}
    assert parsed.format_errors == 0
