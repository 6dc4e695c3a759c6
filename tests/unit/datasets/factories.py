"""Builders of logged chat calls for the dataset tests."""

from __future__ import annotations

from typing import Any

import orjson

from flywheel.config.schema import CandidateModel, DataSplitConfig, ICLConfig, JobConfig
from flywheel.domain.logs import ChatLog

SYSTEM = {"role": "system", "content": "You route requests."}


def tool(name: str) -> dict[str, Any]:
    """An OpenAI function tool."""
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": f"does {name}",
            "parameters": {"type": "object", "properties": {"x": {"type": "string"}}},
        },
    }


def chat(
    user: str,
    *,
    call: str | None = None,
    arguments: Any = None,
    tools: list[str] | None = None,
    content: str | None = "ok",
    finish_reason: str = "stop",
    system: bool = True,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A (request, response) pair; ``call`` makes the answer a tool call."""
    offered = tools if tools is not None else ([call] if call else [])
    request: dict[str, Any] = {
        "model": "prod",
        "messages": [*([dict(SYSTEM)] if system else []), {"role": "user", "content": user}],
    }
    if offered:
        request["tools"] = [tool(n) for n in offered]
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if call:
        args = arguments if arguments is not None else {"x": user[:10]}
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": f"call-{abs(hash(user)) % 1000}",
                    "type": "function",
                    "function": {
                        "name": call,
                        "arguments": args if isinstance(args, str) else orjson.dumps(args).decode(),
                    },
                }
            ],
        }
        finish_reason = "tool_calls" if finish_reason == "stop" else finish_reason
    response = {"choices": [{"index": 0, "message": message, "finish_reason": finish_reason}]}
    return request, response


def log(i: int, user: str, **kwargs: Any) -> ChatLog:
    """A stored ChatLog at timestamp ``1000 * i``."""
    request, response = chat(user, **kwargs)
    return ChatLog(
        client_id="c", workload_id="w", timestamp=1000 * i, request=request, response=response
    )


def job_config(**split: Any) -> JobConfig:
    """A job config with two LLM candidates of different context lengths."""
    icl = split.pop("icl", {})
    defaults: dict[str, Any] = {"eval_size": 5, "min_total_records": 20, "limit": 1000}
    return JobConfig(
        candidates=[
            CandidateModel(name="small", context_length=2048),
            CandidateModel(name="large", context_length=8192),
        ],
        data_split_config=DataSplitConfig(**{**defaults, **split}),
        icl_config=ICLConfig(**{"max_context_length": 8192, "reserved_tokens": 512, **icl}),
    )


def tool_logs(n: int, *, tools: int = 4, start: int = 0) -> list[ChatLog]:
    """``n`` distinct tool-calling logs spread over ``tools`` tools, plus no-tool answers."""
    names = [f"t{k}" for k in range(tools)]
    out = []
    for i in range(n):
        k = i % (tools + 1)
        user = f"question number {i} about topic {k} with unique words w{i}a w{i}b w{i}c"
        if k == tools:
            out.append(log(start + i, user, tools=names, content=f"plain answer {i}"))
        else:
            out.append(log(start + i, user, call=names[k], tools=names))
    return out
