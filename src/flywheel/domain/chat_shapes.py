"""Structural checks of logged OpenAI ``chat.completions`` requests and responses.

Only what the dataset pipeline and the evaluators rely on is checked: roles, content types,
tool calls whose arguments parse as JSON, the tools list, sampling parameter types, and a
first choice with a message. Everything else is kept exactly as the application sent it,
because replaying the prompt to candidates must reproduce it.

Each check raises :class:`InvalidField` naming the dotted field path and the fix; the caller
turns it into a per-record error. Nothing here does I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import orjson

#: Roles the OpenAI chat API accepts (``function`` is the legacy tool role).
ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_TOOL_CHOICE_WORDS = frozenset({"none", "auto", "required"})
_NUMBER_PARAMS = ("temperature", "top_p", "frequency_penalty", "presence_penalty")
_INT_PARAMS = ("max_tokens", "max_completion_tokens", "n", "seed", "top_logprobs")


class InvalidField(Exception):
    """A field failed a check; ``field`` is its dotted path, ``reason`` says what to fix."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def type_name(value: object) -> str:
    """The JSON name of a value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def require_object(value: object, field: str) -> Mapping[str, Any]:
    """Return ``value`` as a mapping or raise naming the field."""
    if not isinstance(value, Mapping):
        raise InvalidField(field, f"must be a JSON object, got {type_name(value)}")
    return value


def require_string(value: object, field: str, *, non_empty: bool = True) -> str:
    """Return ``value`` as a string or raise naming the field."""
    if not isinstance(value, str):
        raise InvalidField(field, f"must be a string, got {type_name(value)}")
    if non_empty and not value.strip():
        raise InvalidField(field, "must not be empty")
    return value


def is_number(value: object) -> bool:
    """True for finite JSON numbers (booleans are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return not (isinstance(value, float) and not math.isfinite(value))


def check_chat_request(request: object, field: str = "request") -> None:
    """Check an OpenAI chat.completions request body."""
    body = require_object(request, field)
    if "model" not in body:
        raise InvalidField(f"{field}.model", "is missing; add the model name the app called")
    require_string(body["model"], f"{field}.model")
    if "messages" not in body:
        raise InvalidField(f"{field}.messages", "is missing; add the prompt's messages list")
    messages = body["messages"]
    if not isinstance(messages, list):
        raise InvalidField(f"{field}.messages", f"must be an array, got {type_name(messages)}")
    if not messages:
        raise InvalidField(f"{field}.messages", "must contain at least one message")
    for i, message in enumerate(messages):
        check_message(message, f"{field}.messages[{i}]")
    if body.get("tools") is not None:
        _check_tools(body["tools"], f"{field}.tools")
    if body.get("tool_choice") is not None:
        _check_tool_choice(body["tool_choice"], f"{field}.tool_choice")
    for name in _NUMBER_PARAMS:
        value = body.get(name)
        if value is not None and not is_number(value):
            raise InvalidField(f"{field}.{name}", f"must be a number, got {type_name(value)}")
    for name in _INT_PARAMS:
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise InvalidField(f"{field}.{name}", f"must be an integer, got {type_name(value)}")


def check_chat_response(response: object, field: str = "response") -> None:
    """Check an OpenAI ChatCompletion: at least one choice, each with an assistant message."""
    body = require_object(response, field)
    if "choices" not in body:
        raise InvalidField(f"{field}.choices", "is missing; log the whole ChatCompletion")
    choices = body["choices"]
    if not isinstance(choices, list):
        raise InvalidField(f"{field}.choices", f"must be an array, got {type_name(choices)}")
    if not choices:
        raise InvalidField(f"{field}.choices", "must contain at least one choice")
    for i, choice in enumerate(choices):
        path = f"{field}.choices[{i}]"
        choice_body = require_object(choice, path)
        if choice_body.get("message") is None:
            raise InvalidField(f"{path}.message", "is missing; log the non-streamed completion")
        check_message(choice_body["message"], f"{path}.message", response=True)


def check_message(message: object, field: str, *, response: bool = False) -> None:
    """Check one chat message (``response``: a completion's message, role may be omitted)."""
    body = require_object(message, field)
    role = body.get("role")
    if role is None and response:
        role = "assistant"
    if role is None:
        raise InvalidField(f"{field}.role", f"is missing; use one of {sorted(ROLES)}")
    if not isinstance(role, str) or role not in ROLES:
        raise InvalidField(
            f"{field}.role", f"{role!r} is not a chat role; use one of {sorted(ROLES)}"
        )
    if response and role != "assistant":
        raise InvalidField(
            f"{field}.role", f"a completion's message must be 'assistant', not {role!r}"
        )
    content = body.get("content")
    if content is not None:
        _check_content(content, f"{field}.content")
    if body.get("name") is not None:
        require_string(body["name"], f"{field}.name")
    tool_calls = body.get("tool_calls")
    if tool_calls is not None:
        if role != "assistant":
            raise InvalidField(
                f"{field}.tool_calls", f"only assistant messages carry tool calls, not {role}"
            )
        _check_tool_calls(tool_calls, f"{field}.tool_calls")
    if body.get("function_call") is not None:
        _check_function(body["function_call"], f"{field}.function_call")
    if role == "assistant":
        has_output = bool(tool_calls) or body.get("function_call") is not None
        if content is None and not has_output and body.get("refusal") is None:
            raise InvalidField(
                f"{field}.content", "assistant message has neither content nor tool_calls"
            )
    elif content is None:
        raise InvalidField(f"{field}.content", f"is missing; a {role} message needs content")
    if role == "tool":
        if "tool_call_id" not in body:
            raise InvalidField(
                f"{field}.tool_call_id", "is missing; set the id of the call answered"
            )
        require_string(body["tool_call_id"], f"{field}.tool_call_id")


def _check_content(content: object, field: str) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise InvalidField(
            field, f"must be a string, an array of parts or null, got {type_name(content)}"
        )
    for i, part in enumerate(content):
        part_body = require_object(part, f"{field}[{i}]")
        if "type" not in part_body:
            raise InvalidField(f"{field}[{i}].type", "is missing; e.g. 'text' or 'image_url'")
        part_type = require_string(part_body["type"], f"{field}[{i}].type")
        if part_type == "text":
            require_string(part_body.get("text"), f"{field}[{i}].text", non_empty=False)


def _check_tool_calls(tool_calls: object, field: str) -> None:
    if not isinstance(tool_calls, list):
        raise InvalidField(field, f"must be an array, got {type_name(tool_calls)}")
    for i, call in enumerate(tool_calls):
        path = f"{field}[{i}]"
        body = require_object(call, path)
        call_type = body.get("type", "function")
        if call_type is None:
            call_type = "function"
        require_string(call_type, f"{path}.type")
        if body.get("id") is not None:
            require_string(body["id"], f"{path}.id")
        if call_type == "function":
            if "function" not in body:
                raise InvalidField(f"{path}.function", "is missing; add {name, arguments}")
            _check_function(body["function"], f"{path}.function")


def _check_function(function: object, field: str) -> None:
    body = require_object(function, field)
    if "name" not in body:
        raise InvalidField(f"{field}.name", "is missing; add the called function's name")
    require_string(body["name"], f"{field}.name")
    arguments = body.get("arguments")
    if arguments is None:
        raise InvalidField(
            f"{field}.arguments", "is missing; use a JSON-encoded string such as '{}'"
        )
    if isinstance(arguments, Mapping):
        return  # an already-decoded object is unambiguous; kept as sent
    if not isinstance(arguments, str):
        raise InvalidField(
            f"{field}.arguments",
            f"must be a JSON-encoded string or an object, got {type_name(arguments)}",
        )
    try:
        orjson.loads(arguments)
    except orjson.JSONDecodeError as exc:
        raise InvalidField(
            f"{field}.arguments", f"is not valid JSON ({exc}); log the arguments the model produced"
        ) from None


def _check_tools(tools: object, field: str) -> None:
    if not isinstance(tools, list):
        raise InvalidField(field, f"must be an array, got {type_name(tools)}")
    for i, tool in enumerate(tools):
        path = f"{field}[{i}]"
        body = require_object(tool, path)
        if "type" not in body:
            raise InvalidField(f"{path}.type", "is missing; use 'function'")
        tool_type = require_string(body["type"], f"{path}.type")
        if tool_type != "function":
            continue
        function = require_object(body.get("function"), f"{path}.function")
        if "name" not in function:
            raise InvalidField(f"{path}.function.name", "is missing; add the tool's name")
        require_string(function["name"], f"{path}.function.name")
        if function.get("parameters") is not None:
            require_object(function["parameters"], f"{path}.function.parameters")


def _check_tool_choice(choice: object, field: str) -> None:
    if isinstance(choice, str):
        if choice not in _TOOL_CHOICE_WORDS:
            raise InvalidField(
                field, f"{choice!r} is not one of {sorted(_TOOL_CHOICE_WORDS)} or an object"
            )
        return
    body = require_object(choice, field)
    if "type" not in body:
        raise InvalidField(
            f"{field}.type", "is missing; e.g. {'type': 'function', 'function': {...}}"
        )
    require_string(body["type"], f"{field}.type")
