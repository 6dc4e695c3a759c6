"""Host P: the NIM Proxy's OpenAI-compatible API (nmp-api.md §6)."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from tests.fake_nmp.common import install_faults, json_body, missing_fields, not_found
from tests.fake_nmp.state import FakeNMP

EMBEDDING_DIM = 8


def _embed(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round(b / 255.0, 6) for b in digest[:EMBEDDING_DIM]]


def create_nim_app(state: FakeNMP) -> FastAPI:
    """The P host app over ``state``: serves whatever deployments and LoRA jobs made ready."""
    app = FastAPI(title="fake NMP (P)")
    install_faults(app, state, "P")

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        with state.lock:
            data = [
                {"id": model, "created": created, "owned_by": "system", "object": "model"}
                for model, created in state.served.items()
            ]
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        body = await json_body(request)
        if (invalid := missing_fields(body, "model", "messages")) is not None:
            return invalid
        model = str(body["model"])
        with state.lock:
            if model not in state.served:
                return not_found("model", model)
        message: dict[str, Any] = {"role": "assistant", "content": "ok"}
        tools = body.get("tools") or []
        if tools:
            name = tools[0].get("function", {}).get("name", "tool")
            message = {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": f"chatcmpl-tool-{uuid.uuid4().hex[:12]}",
                        "type": "function",
                        "function": {"name": name, "arguments": json.dumps({})},
                    }
                ],
            }
        return JSONResponse(
            {
                "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
            }
        )

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Response:
        body = await json_body(request)
        if (invalid := missing_fields(body, "model", "input")) is not None:
            return invalid
        model = str(body["model"])
        with state.lock:
            if model not in state.served:
                return not_found("model", model)
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {"object": "embedding", "index": i, "embedding": _embed(str(t))}
            for i, t in enumerate(texts)
        ]
        tokens = sum(len(str(t).split()) for t in texts)
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    return app
