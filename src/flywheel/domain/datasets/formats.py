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
from dataclasses import dataclass
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
    calls = answer_tool_calls(record, parse_arguments=parse_arguments) if record.calls else None
    return _eval_response(record, calls)


def _eval_response(record: ParsedRecord, calls: list[dict[str, Any]] | None) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": record.choice["message"].get("content"),
    }
    if calls:
        message["tool_calls"] = calls
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
    calls = answer_tool_calls(record, parse_arguments=parse_arguments) if record.calls else None
    return _final_turn(record, calls)


def _final_turn(record: ParsedRecord, calls: list[dict[str, Any]] | None) -> dict[str, Any]:
    if calls:
        return {"role": "assistant", "content": "", "tool_calls": calls}
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
    return join_eval_line(
        record.settings.json,
        orjson.dumps(file_messages(record, null_content=True)),
        orjson.dumps(eval_response(record, parse_arguments=parse_arguments)),
    )


def join_eval_line(settings_json: bytes, messages_json: bytes, response_json: bytes) -> bytes:
    """An eval row from its serialised parts: the request settings (``{...}`` without
    ``messages``), the request's messages in file form, and the reference response."""
    head = settings_json[:-1]  # '{...' without its closing brace
    sep = b"," if len(head) > 1 else b""
    return (
        b'{"request":'
        + head
        + sep
        + b'"messages":'
        + messages_json
        + b'},"response":'
        + response_json
        + b"}"
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


#: ``sft_line`` starts with this, then the messages array.
SFT_MESSAGES_AT = len(b'{"messages":')


@dataclass(frozen=True, slots=True)
class RenderedRows:
    """A record's SFT row, and its eval row in parts that mostly point into the SFT row.

    The eval row is needed for a few records only (``eval_size``), so it is not assembled
    here: its messages are usually the SFT row's messages minus the answer turn (they differ
    only when a message has null content, which SFT writes as ""), and its request settings
    are shared by the workload's records. :meth:`eval_line` assembles it byte-identical to
    :func:`eval_line`.
    """

    sft_line: bytes
    #: Length of the SFT messages array without the answer turn, as ``[...]``: the eval
    #: messages are ``sft_line[SFT_MESSAGES_AT:SFT_MESSAGES_AT + n - 1] + b"]"``.
    history_len: int
    #: The eval messages when they differ from that history (null content), else None.
    eval_messages: bytes | None
    response_json: bytes
    settings_json: bytes

    def eval_messages_json(self) -> bytes:
        """The eval row's messages array."""
        return eval_messages_of(self.sft_line, self.history_len, self.eval_messages)

    @property
    def eval_line(self) -> bytes:
        """The eval row, as :func:`eval_line` renders it."""
        return join_eval_line(self.settings_json, self.eval_messages_json(), self.response_json)


def eval_messages_of(sft_line: bytes, history_len: int, eval_messages: bytes | None) -> bytes:
    """The eval messages array from the SFT row (see :class:`RenderedRows`)."""
    if eval_messages is not None:
        return eval_messages
    return sft_line[SFT_MESSAGES_AT : SFT_MESSAGES_AT + history_len - 1] + b"]"


def render_rows(record: ParsedRecord, *, parse_arguments: bool) -> RenderedRows:
    """Both rows of a record, sharing the work: the answer's tool calls are built once, the
    history is serialised once (twice only with null content), the eval row not joined."""
    calls = answer_tool_calls(record, parse_arguments=parse_arguments) if record.calls else None
    messages = record.request["messages"]
    # Text-only history (the usual case) is written as logged in both files.
    plain = all(type(m.get("content")) is str and not m.get("tool_calls") for m in messages)
    history = orjson.dumps(messages if plain else file_messages(record, null_content=False))
    final = orjson.dumps(_final_turn(record, calls))
    tools = record.settings.tools_json
    sft = b"".join(
        (
            b'{"messages":',
            history[:-1] + b"," if len(history) > 2 else b"[",
            final,
            b'],"tools":' + tools + b"}" if tools else b"]}",
        )
    )
    eval_messages: bytes | None = None
    if len(history) <= 2 or (not plain and any(m.get("content") is None for m in messages)):
        eval_messages = orjson.dumps(file_messages(record, null_content=True))
    return RenderedRows(
        sft_line=sft,
        history_len=len(history),
        eval_messages=eval_messages,
        response_json=orjson.dumps(_eval_response(record, calls)),
        settings_json=record.settings.json,
    )


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
