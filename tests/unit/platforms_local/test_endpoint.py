"""The OpenAI-compatible client, with HTTP faked at the transport."""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest

from flywheel.errors import PlatformError, PlatformUnavailable
from flywheel.platforms.local import endpoint
from flywheel.platforms.local.endpoint import EndpointClient, list_models
from flywheel.platforms.local.models import ModelSource

SOURCE = ModelSource(
    kind="endpoint",
    name="m",
    endpoint_url="http://llm.test",
    endpoint_model="small",
    api_key_env="TEST_LLM_KEY",
)


def _reply(message: dict[str, object]) -> httpx.Response:
    body = {
        "choices": [{"message": message}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3},
    }
    return httpx.Response(200, json=body)


def test_answers_in_order_with_bounded_concurrency(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_LLM_KEY", "sk-test")
    in_flight = 0
    peak = 0
    seen: list[dict[str, object]] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        assert request.url.path == "/v1/chat/completions"
        assert request.headers["Authorization"] == "Bearer sk-test"
        body = orjson.loads(request.content)
        seen.append(body)
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return _reply({"role": "assistant", "content": body["messages"][0]["content"]})

    client = EndpointClient(SOURCE, concurrency=2, transport=httpx.MockTransport(handler))
    chats = [([{"role": "user", "content": f"q{i}"}], None) for i in range(6)]
    answers = client.complete(chats, max_new_tokens=5)
    assert answers is not None
    assert [a.message["content"] for a in answers if a.message] == [f"q{i}" for i in range(6)]
    assert peak == 2
    assert all(a.input_tokens == 7 and a.output_tokens == 3 for a in answers)
    assert all(a.latency_ms is not None and a.latency_ms > 0 for a in answers)
    assert seen[0]["model"] == "small"
    assert seen[0]["max_tokens"] == 5
    assert "tools" not in seen[0]


def test_transient_errors_are_retried_and_permanent_ones_recorded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(endpoint, "wait_exponential", lambda **_: lambda _state: 0)
    calls = {"flaky": 0, "bad": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        content = orjson.loads(request.content)["messages"][0]["content"]
        calls[content] += 1
        if content == "flaky" and calls["flaky"] < 3:
            return httpx.Response(503, text="busy")
        if content == "bad":
            return httpx.Response(400, text="no such model")
        return _reply({"role": "assistant", "content": "ok"})

    client = EndpointClient(SOURCE, concurrency=4, transport=httpx.MockTransport(handler))
    answers = client.complete(
        [
            ([{"role": "user", "content": "flaky"}], None),
            ([{"role": "user", "content": "bad"}], None),
        ],
        max_new_tokens=5,
    )
    assert answers is not None
    assert answers[0].message == {"role": "assistant", "content": "ok"}
    assert calls == {"flaky": 3, "bad": 1}
    assert answers[1].message is None
    assert answers[1].error is not None
    assert "400" in answers[1].error


def test_tool_calls_in_text_are_parsed_when_the_server_does_not() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        text = '<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>'
        return _reply({"role": "assistant", "content": text})

    client = EndpointClient(SOURCE, concurrency=1, transport=httpx.MockTransport(handler))
    answers = client.complete(
        [([{"role": "user", "content": "x"}], [{"type": "function"}])], max_new_tokens=5
    )
    assert answers is not None
    message = answers[0].message
    assert message is not None
    assert message["tool_calls"][0]["function"]["name"] == "get_weather"


def test_stop_request_returns_none() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return _reply({"role": "assistant", "content": "ok"})

    client = EndpointClient(SOURCE, concurrency=1, transport=httpx.MockTransport(handler))
    chats = [([{"role": "user", "content": "x"}], None)]
    assert client.complete(chats, max_new_tokens=5, should_stop=lambda: True) is None


def test_list_models_maps_errors() -> None:
    unreachable = ModelSource(kind="endpoint", name="m", endpoint_url="http://127.0.0.1:9")
    with pytest.raises(PlatformUnavailable, match="unreachable"):
        list_models(unreachable, timeout_s=2)
    assert issubclass(PlatformUnavailable, PlatformError)
