"""Tool calling for models whose chat template knows nothing of tools.

**The format** (Hermes / Qwen 2.5 style, which many small instruct models have seen):
the tool schemas are appended to the system prompt as one JSON object per line inside
``<tools></tools>``, and the model is asked to answer each call as

    <tool_call>
    {"name": "<function name>", "arguments": {<arguments object>}}
    </tool_call>

Earlier assistant turns with ``tool_calls`` are rendered into their content in the same
form, and ``tool`` messages become ``user`` turns wrapped in ``<tool_response>`` tags, so a
template that only knows system/user/assistant renders the whole conversation.

**The parser** is tolerant because small models are sloppy: it reads ``<tool_call>``
blocks (closing tag optional), and otherwise a reply that *is* a JSON object or list of
objects with a ``name`` (Llama 3 and Mistral style, ``parameters`` accepted for
``arguments``, a leading ``[TOOL_CALLS]`` ignored). A block that cannot be read is kept as a
call whose arguments are the raw text, so the metrics see (and count) a format error
instead of silently scoring "no call"; :attr:`ParsedReply.format_errors` counts them.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

TOOLS_HEADER = (
    "# Tools\n\n"
    "You may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
)
TOOLS_FOOTER = (
    "\n</tools>\n\n"
    "For each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
)

_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|\Z)", re.S)
_NAME = re.compile(r"[\"']name[\"']\s*:\s*[\"']([^\"']+)[\"']")
_TRAILING_COMMA = re.compile(r",\s*([}\]])")


def render_tools(tools: Sequence[Mapping[str, Any]]) -> str:
    """The tools section appended to the system prompt."""
    lines = "\n".join(orjson.dumps(dict(t)).decode() for t in tools)
    return TOOLS_HEADER + lines + TOOLS_FOOTER


def render_tool_calls(tool_calls: Sequence[Mapping[str, Any]]) -> str:
    """Assistant tool calls as ``<tool_call>`` blocks (string arguments parsed when JSON)."""
    blocks = []
    for call in tool_calls:
        function = call.get("function", call)
        arguments: Any = function.get("arguments") or {}
        if isinstance(arguments, str):
            # unparseable text stays as logged: the model should see what was sent
            with contextlib.suppress(orjson.JSONDecodeError):
                arguments = orjson.loads(arguments)
        body = orjson.dumps({"name": function.get("name"), "arguments": arguments}).decode()
        blocks.append(f"<tool_call>\n{body}\n</tool_call>")
    return "\n".join(blocks)


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, list):  # multi-part content: keep the text parts
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return str(content)


def to_plain_messages(
    messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] | None
) -> list[dict[str, str]]:
    """Messages a tool-unaware template can render: string content, roles system/user/assistant."""
    out: list[dict[str, str]] = []
    for message in messages:
        role = str(message.get("role", "user"))
        text = _text(message.get("content"))
        if role == "developer":
            role = "system"
        if role == "assistant" and message.get("tool_calls"):
            calls = render_tool_calls(message["tool_calls"])
            text = f"{text}\n{calls}" if text else calls
        elif role in {"tool", "function"}:
            role, text = "user", f"<tool_response>\n{text}\n</tool_response>"
        out.append({"role": role, "content": text})
    if tools:
        section = render_tools(tools)
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": f"{out[0]['content']}\n\n{section}".lstrip()}
        else:
            out.insert(0, {"role": "system", "content": section})
    return out


@dataclass(frozen=True)
class ParsedReply:
    """A model's text read back as an OpenAI assistant message."""

    message: dict[str, Any]
    format_errors: int


def _loads_tolerant(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    repaired = _TRAILING_COMMA.sub(r"\1", text.strip().rstrip(",").strip())
    if repaired.count("{") > repaired.count("}"):  # generation stopped before closing
        repaired += "}" * (repaired.count("{") - repaired.count("}"))
    return orjson.loads(repaired)


def _call(obj: Any, index: int) -> dict[str, Any] | None:
    if not isinstance(obj, Mapping):
        return None
    if isinstance(obj.get("function"), Mapping):  # OpenAI-shaped call
        obj = obj["function"]
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        return None
    arguments = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = orjson.loads(arguments) if arguments.strip() else {}
        except orjson.JSONDecodeError:
            return None
    if not isinstance(arguments, Mapping):
        return None
    return {
        "id": f"call_{index}",
        "type": "function",
        "function": {"name": name, "arguments": orjson.dumps(dict(arguments)).decode()},
    }


def _broken(raw: str, index: int) -> dict[str, Any]:
    """A call that could not be read: name if visible, raw text as (invalid) arguments."""
    match = _NAME.search(raw)
    return {
        "id": f"call_{index}",
        "type": "function",
        "function": {"name": match.group(1) if match else "", "arguments": raw},
    }


def _broken_item(obj: Any, index: int) -> dict[str, Any]:
    """A parsed but unusable call, kept so that the metrics see its format error."""
    name, arguments = "", obj
    if isinstance(obj, Mapping):
        raw_name = obj.get("name")
        name = raw_name if isinstance(raw_name, str) else ""
        arguments = obj.get("arguments", obj.get("parameters", {}))
    text = arguments if isinstance(arguments, str) else orjson.dumps(arguments).decode()
    return {
        "id": f"call_{index}",
        "type": "function",
        "function": {"name": name, "arguments": text},
    }


def _calls_from(raw: str, start: int) -> tuple[list[dict[str, Any]], int]:
    try:
        data = _loads_tolerant(raw)
    except orjson.JSONDecodeError:
        return [_broken(raw, start)], 1
    items = data if isinstance(data, list) else [data]
    calls: list[dict[str, Any]] = []
    errors = 0
    for item in items:
        call = _call(item, start + len(calls))
        if call is None:
            errors += 1
            call = _broken_item(item, start + len(calls))
        calls.append(call)
    return calls, errors


def parse_reply(text: str) -> ParsedReply:
    """Read tool calls out of generated text; the rest is the message content."""
    blocks = _BLOCK.findall(text)
    calls: list[dict[str, Any]] = []
    errors = 0
    if blocks:
        for raw in blocks:
            found, bad = _calls_from(raw, len(calls))
            calls.extend(found)
            errors += bad
        content = _BLOCK.sub("", text).strip()
    else:
        stripped = text.strip().removeprefix("[TOOL_CALLS]").strip()
        content = text.strip()
        if stripped[:1] in {"{", "["} and '"name"' in stripped:
            found, bad = _calls_from(stripped, 0)
            if bad < len(found):  # at least one real call: this reply is a tool call
                calls, errors, content = found, bad, ""
    message: dict[str, Any] = {"role": "assistant", "content": content or None}
    if calls:
        message["tool_calls"] = calls
    elif message["content"] is None:
        message["content"] = ""
    return ParsedReply(message=message, format_errors=errors)
