"""The JSON-able rows of each dataset file, built from a :class:`ParsedRecord`.

Every function returns *new* dicts and leaves the logged request untouched (blueprint D5);
unchanged sub-objects (a user message, the tools list) are shared, not copied, because the
caller only serialises them.

* Eval (nmp-api.md §9.2, DFW form): ``{"request": {...}, "response": {"choices": [...]}}``.
* SFT train/validation (§9.1): ``{"messages": [..., final assistant turn], "tools": [...]}``.
* ICL eval: the eval row with few-shot turns inserted after the leading system messages
  (:func:`icl_item` documents the exact form).

In files, tool-call ``arguments`` are always JSON *strings* (the OpenAI wire form); parsed
objects live only on :class:`~flywheel.domain.datasets.records.ToolCall` for scoring.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from flywheel.domain.datasets.records import ParsedRecord, ToolCall

#: Content of the synthetic ``tool`` message that answers a few-shot example's tool call.
ICL_TOOL_RESULT = "(example: tool result not shown)"
_LEADING_ROLES = frozenset({"system", "developer"})


def _arguments_text(call: ToolCall, *, parse_arguments: bool) -> str:
    if not parse_arguments and call.raw_arguments is not None:
        return call.raw_arguments
    return orjson.dumps(call.arguments).decode()


def answer_tool_calls(record: ParsedRecord, *, parse_arguments: bool) -> list[dict[str, Any]]:
    """The reference answer's tool calls in OpenAI file form (string arguments)."""
    out: list[dict[str, Any]] = []
    for call in record.calls:
        item: dict[str, Any] = {}
        if call.call_id is not None:
            item["id"] = call.call_id
        item["type"] = "function"
        item["function"] = {
            "name": call.name,
            "arguments": _arguments_text(call, parse_arguments=parse_arguments),
        }
        out.append(item)
    return out


def _file_message(message: Mapping[str, Any], *, null_content: bool) -> Mapping[str, Any]:
    """A history message with object arguments stringified (and null content → "" for SFT)."""
    tool_calls: list[Any] = message.get("tool_calls") or []
    needs_args = bool(tool_calls) and any(
        not isinstance(c.get("function", {}).get("arguments"), str) for c in tool_calls
    )
    needs_content = not null_content and message.get("content") is None
    if not needs_args and not needs_content:
        return message
    copy = dict(message)
    if needs_content:
        copy["content"] = ""
    if needs_args:
        copy["tool_calls"] = [
            c
            if isinstance(c.get("function", {}).get("arguments"), str)
            else {
                **c,
                "function": {
                    **c["function"],
                    "arguments": orjson.dumps(c["function"]["arguments"]).decode(),
                },
            }
            for c in tool_calls
        ]
    return copy


def file_messages(record: ParsedRecord, *, null_content: bool) -> list[Mapping[str, Any]]:
    """The request's messages in file form (``null_content=False``: null content → "")."""
    return [_file_message(m, null_content=null_content) for m in record.request["messages"]]


def eval_item(record: ParsedRecord, *, parse_arguments: bool) -> dict[str, Any]:
    """The DFW eval row: the logged request (string arguments) and the reference choice."""
    request = {**record.request, "messages": file_messages(record, null_content=True)}
    return {"request": request, "response": eval_response(record, parse_arguments=parse_arguments)}


def eval_response(record: ParsedRecord, *, parse_arguments: bool) -> dict[str, Any]:
    """The reference response of an eval row: the first choice (and usage)."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": record.choice["message"].get("content"),
    }
    if record.calls:
        message["tool_calls"] = answer_tool_calls(record, parse_arguments=parse_arguments)
    response: dict[str, Any] = {
        "choices": [
            {"index": 0, "message": message, "finish_reason": record.choice.get("finish_reason")}
        ]
    }
    if record.usage is not None:
        response["usage"] = record.usage
    return response


def final_assistant_turn(record: ParsedRecord, *, parse_arguments: bool) -> dict[str, Any]:
    """The answer as the last SFT turn: content "" for tool calls, never null."""
    if record.calls:
        return {
            "role": "assistant",
            "content": "",
            "tool_calls": answer_tool_calls(record, parse_arguments=parse_arguments),
        }
    content = record.choice["message"].get("content")
    return {"role": "assistant", "content": content if content is not None else ""}


def sft_item(record: ParsedRecord, *, parse_arguments: bool) -> dict[str, Any]:
    """The OpenAI messages row for SFT (NMP Customizer and the local trainer)."""
    messages = file_messages(record, null_content=False)
    item: dict[str, Any] = {
        "messages": [*messages, final_assistant_turn(record, parse_arguments=parse_arguments)]
    }
    if record.request.get("tools"):
        item["tools"] = record.request["tools"]
    return item


def eval_line(record: ParsedRecord, *, parse_arguments: bool) -> bytes:
    """``orjson.dumps(eval_item(...))`` with the request settings spliced in pre-serialised."""
    head = record.settings.json[:-1]  # '{...' without its closing brace
    messages = orjson.dumps(file_messages(record, null_content=True))
    response = orjson.dumps(eval_response(record, parse_arguments=parse_arguments))
    sep = b"," if len(head) > 1 else b""
    return (
        b'{"request":' + head + sep + b'"messages":' + messages + b'},"response":' + response + b"}"
    )


def sft_line(record: ParsedRecord, *, parse_arguments: bool) -> bytes:
    """``orjson.dumps(sft_item(...))`` with the tools spliced in pre-serialised."""
    messages = orjson.dumps(
        [
            *file_messages(record, null_content=False),
            final_assistant_turn(record, parse_arguments=parse_arguments),
        ]
    )
    tools = record.settings.tools_json
    return b'{"messages":' + messages + (b',"tools":' + tools if tools else b"") + b"}"


def example_turns(sft_row: Mapping[str, Any], *, index: int) -> list[Mapping[str, Any]]:
    """A train row's conversation as few-shot turns: no system messages, tool calls answered.

    ``index`` numbers the example so that synthesised tool-call ids are unique in one prompt.
    """
    turns: list[Mapping[str, Any]] = [
        m for m in sft_row["messages"][:-1] if m.get("role") not in _LEADING_ROLES
    ]
    answer = dict(sft_row["messages"][-1])
    calls = answer.get("tool_calls") or []
    if calls:
        # OpenAI-compatible servers reject an assistant tool call that no tool message
        # answers, so each call gets an id and a placeholder result.
        answer["tool_calls"] = [
            {**c, "id": c.get("id") or f"icl-{index}-{j}"} for j, c in enumerate(calls)
        ]
    turns.append(answer)
    turns.extend(
        {"role": "tool", "tool_call_id": c["id"], "content": ICL_TOOL_RESULT}
        for c in answer.get("tool_calls") or []
    )
    return turns


def icl_item(
    eval_row: Mapping[str, Any], examples: Sequence[Sequence[Mapping[str, Any]]]
) -> dict[str, Any]:
    """The eval row with few-shot examples as prior turns.

    Form: the eval request's leading ``system``/``developer`` messages, then each example's
    turns in order (its user/assistant/tool history without system messages, its answer,
    and one ``tool`` message with :data:`ICL_TOOL_RESULT` per tool call), then the eval
    request's own remaining messages. The reference response is unchanged.
    """
    messages = eval_row["request"]["messages"]
    head = 0
    while head < len(messages) and messages[head].get("role") in _LEADING_ROLES:
        head += 1
    shots = [turn for example in examples for turn in example]
    request = {**eval_row["request"], "messages": [*messages[:head], *shots, *messages[head:]]}
    return {"request": request, "response": eval_row["response"]}


def prompt_of(eval_row: Mapping[str, Any]) -> dict[str, Any]:
    """What a candidate is sent for an eval row (for token counting): messages and tools."""
    request = eval_row["request"]
    prompt: dict[str, Any] = {"messages": request["messages"]}
    if request.get("tools"):
        prompt["tools"] = request["tools"]
    return prompt
