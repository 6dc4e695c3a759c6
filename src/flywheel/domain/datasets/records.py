"""One logged chat call → a parsed, checked record, or the reason it was dropped.

The checks run in a fixed order and a record is counted under the *first* reason it fails,
so the manifest's drop counts add up to the records pulled minus the records kept:

1. ``invalid_shape``: not an OpenAI request/response (see :mod:`flywheel.domain.chat_shapes`)
   or no first choice with a message;
2. ``error_response``: the response carries an ``error`` or has no choices;
3. ``truncated``: ``finish_reason == "length"`` (the reference answer was cut off);
4. ``empty_response``: the answer has neither text nor tool calls;
5. ``invalid_tool_arguments``: a tool call's arguments are not a JSON object;
6. ``unknown_tool``: a tool call names a function the request did not offer;
7. ``no_user_message``: the request has no user turn with text.

``over_context_budget``, ``duplicate`` and ``near_duplicate`` are decided later by
:mod:`flywheel.domain.datasets.pipeline`, which sees the rendered record and earlier ones.

Records are immutable (blueprint D5): nothing here writes into the logged dicts; the file
formats build new dicts and share untouched sub-objects.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from flywheel.domain.chat_shapes import (
    InvalidField,
    check_chat_request,
    check_chat_response,
    check_message,
)

NO_TOOL = "no_tool"


class DropReason(StrEnum):
    """Why a pulled record is not in the dataset (stable codes; the manifest counts them)."""

    invalid_shape = "invalid_shape"
    error_response = "error_response"
    truncated = "truncated"
    empty_response = "empty_response"
    invalid_tool_arguments = "invalid_tool_arguments"
    unknown_tool = "unknown_tool"
    no_user_message = "no_user_message"
    over_context_budget = "over_context_budget"
    duplicate = "duplicate"
    near_duplicate = "near_duplicate"


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One tool call of the reference answer, its arguments parsed for scoring."""

    name: str
    arguments: Mapping[str, Any]
    #: The logged arguments string (None when the log held an object), kept so that
    #: ``parse_function_arguments: false`` can write it back byte for byte.
    raw_arguments: str | None
    call_id: str | None


@dataclass(frozen=True, slots=True)
class RequestSettings:
    """The request minus its messages, checked once per distinct value and kept serialised.

    Workloads repeat the same tools and parameters on every call, so serialising them once
    (not once per record and file) is most of the pipeline's speed.
    """

    offered: frozenset[str]
    #: JSON of the request without ``messages`` (keys sorted), e.g. ``{"model":..,"tools":..}``.
    json: bytes
    #: JSON of the ``tools`` list, or None when the request offers none.
    tools_json: bytes | None


@dataclass(frozen=True, slots=True)
class ParsedRecord:
    """A record that passed the checks: the logged request and first choice, and derivations."""

    timestamp: int
    request: Mapping[str, Any]
    choice: Mapping[str, Any]
    usage: Mapping[str, Any] | None
    calls: tuple[ToolCall, ...]
    #: Per record (blueprint D2): the answer calls tools or the request offers them.
    tool_calling: bool
    #: The user turns' text, joined by newlines, as logged (normalise for keys).
    user_text: str
    settings: RequestSettings

    @property
    def tool_names(self) -> tuple[str, ...]:
        """Sorted distinct names of the answer's tool calls."""
        return tuple(sorted({c.name for c in self.calls}))

    @property
    def label(self) -> str:
        """Stratification class: the sorted set of called tools, or ``no_tool``."""
        names = self.tool_names
        return "+".join(names) if names else NO_TOOL


def normalise_text(text: str) -> str:
    """Unicode-normalised, case-folded, whitespace-collapsed text (the dedup key's basis)."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    return " ".join(text.casefold().split())


def content_text(content: object) -> str:
    """The text of a message's ``content`` (a string, or the text parts of a parts array)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            p["text"]
            for p in content
            if isinstance(p, Mapping) and p.get("type") == "text" and isinstance(p.get("text"), str)
        )
    return ""


def offered_tool_names(request: Mapping[str, Any]) -> frozenset[str]:
    """Names of the functions a request offers in ``tools``."""
    tools = request.get("tools") or ()
    return frozenset(
        t["function"]["name"]
        for t in tools
        if t.get("type") == "function" and isinstance(t.get("function"), dict)
    )


def _parse_calls(raw_calls: list[Any]) -> tuple[ToolCall, ...] | DropReason:
    """Parse the answer's tool calls, checking what chat_shapes checks for them."""
    calls: list[ToolCall] = []
    for call in raw_calls:
        if type(call) is not dict:
            return DropReason.invalid_shape
        call_type = call.get("type") or "function"
        call_id = call.get("id")
        function = call.get("function")
        if (
            call_type != "function"
            or (call_id is not None and not (isinstance(call_id, str) and call_id.strip()))
            or type(function) is not dict
        ):
            return DropReason.invalid_shape
        name = function.get("name")
        if not isinstance(name, str) or not name.strip():
            return DropReason.invalid_shape
        arguments = function.get("arguments")
        raw: str | None = None
        if isinstance(arguments, str):
            raw = arguments
            try:
                arguments = orjson.loads(arguments)
            except orjson.JSONDecodeError:
                return DropReason.invalid_tool_arguments
        if type(arguments) is not dict:
            return DropReason.invalid_tool_arguments
        calls.append(ToolCall(name=name, arguments=arguments, raw_arguments=raw, call_id=call_id))
    return tuple(calls)


_SIMPLE_ROLES = frozenset({"system", "developer", "user"})
_SIMPLE_KEYS = frozenset({"role", "content"})
_ANSWER_KEYS = frozenset({"role", "content", "tool_calls", "refusal", "annotations", "audio"})
_PLACEHOLDER = {"role": "user", "content": "x"}
_CACHE_LIMIT = 1024


class RecordParser:
    """:func:`parse_record` with memory: the request's non-message part (model, tools,
    sampling parameters) is usually identical across a workload, so its full check runs
    once per distinct value; plain text messages are checked inline. Anything unusual goes
    through :mod:`flywheel.domain.chat_shapes` in full, so the verdict is the same.
    """

    def __init__(self) -> None:
        self._settings: dict[bytes, RequestSettings] = {}

    def _request_settings(self, request: dict[str, Any]) -> RequestSettings:
        """Check the non-message part (cached by content)."""
        rest = {k: v for k, v in request.items() if k != "messages"}
        key = orjson.dumps(rest, option=orjson.OPT_SORT_KEYS)
        settings = self._settings.get(key)
        if settings is None:
            check_chat_request({**rest, "messages": [_PLACEHOLDER]})
            tools = request.get("tools")
            settings = RequestSettings(
                offered=offered_tool_names(request),
                json=key,
                tools_json=orjson.dumps(tools) if tools else None,
            )
            if len(self._settings) >= _CACHE_LIMIT:
                self._settings.clear()
            self._settings[key] = settings
        return settings

    def _check_messages(self, messages: object) -> None:
        if type(messages) is not list or not messages:
            check_chat_request({"model": "m", "messages": messages})  # raises with the reason
            return
        for i, m in enumerate(messages):
            if not (
                type(m) is dict
                and m.keys() <= _SIMPLE_KEYS
                and m.get("role") in _SIMPLE_ROLES
                and type(m.get("content")) is str
            ):
                check_message(m, f"request.messages[{i}]")

    def _check_response(self, response: dict[str, Any], choices: list[Any]) -> None:
        message = choices[0]["message"]
        if (
            len(choices) == 1
            and message.keys() <= _ANSWER_KEYS
            and message.get("role", "assistant") == "assistant"
        ):
            content = message.get("content")
            if content is None or type(content) is str:
                return  # tool calls were checked by _parse_calls
        check_chat_response(response)

    def parse(
        self, timestamp: int, request: Mapping[str, Any], response: Mapping[str, Any]
    ) -> ParsedRecord | DropReason:
        """Check one logged call; return the parsed record or the first reason it fails."""
        if type(request) is not dict or type(response) is not dict:
            return DropReason.invalid_shape
        if response.get("error") is not None or not response.get("choices"):
            # Before the shape check, so an error body is counted as an error, not a shape.
            return DropReason.error_response
        choices = response["choices"]
        if type(choices) is not list:
            return DropReason.invalid_shape
        choice = choices[0]
        if type(choice) is not dict or type(choice.get("message")) is not dict:
            return DropReason.invalid_shape
        message = choice["message"]
        if choice.get("finish_reason") == "length":
            return DropReason.truncated
        raw_calls = message.get("tool_calls") or []
        if type(raw_calls) is not list:
            return DropReason.invalid_shape
        if not raw_calls and not content_text(message.get("content")).strip():
            return DropReason.empty_response
        calls = _parse_calls(raw_calls)
        if isinstance(calls, DropReason):
            return calls
        try:
            settings = self._request_settings(request)
            self._check_messages(request.get("messages"))
            self._check_response(response, choices)
        except InvalidField:
            return DropReason.invalid_shape
        if any(c.name not in settings.offered for c in calls):
            return DropReason.unknown_tool
        user_text = "\n".join(
            text
            for m in request["messages"]
            if m.get("role") == "user" and (text := content_text(m.get("content"))).strip()
        )
        if not user_text:
            return DropReason.no_user_message
        usage = response.get("usage")
        return ParsedRecord(
            timestamp=timestamp,
            request=request,
            choice=choice,
            usage=usage if type(usage) is dict else None,
            calls=calls,
            tool_calling=bool(calls) or bool(request.get("tools")),
            user_text=user_text,
            settings=settings,
        )


def parse_record(
    timestamp: int, request: Mapping[str, Any], response: Mapping[str, Any]
) -> ParsedRecord | DropReason:
    """Check one logged call with a fresh :class:`RecordParser` (tests, one-offs)."""
    return RecordParser().parse(timestamp, request, response)
