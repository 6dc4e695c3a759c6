"""The application-side logger: the real openai client over a fake transport, real sinks."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
from structlog.testing import capture_logs

from flywheel.client import FlywheelLogger, HttpSink, StoreSink, wrap_openai
from flywheel.client.sinks import LogDeliveryFailed
from flywheel.domain.logs import ChatLog, RetrievalLog
from flywheel.services.ingestion import ingest_payload
from flywheel.stores.base import LogStore
from flywheel.stores.registry import open_log_store

COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": "big-model",
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
    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
}
TOOLS = [{"type": "function", "function": {"name": "get_order", "parameters": {"type": "object"}}}]


def openai_handler(request: httpx.Request) -> httpx.Response:
    assert request.url.path == "/v1/chat/completions"
    body = orjson.loads(request.content)
    if body.get("stream"):
        chunk = {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "big-model",
            "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}],
        }
        sse = b"data: " + orjson.dumps(chunk) + b"\n\ndata: [DONE]\n\n"
        return httpx.Response(200, content=sse, headers={"content-type": "text/event-stream"})
    if body["model"] == "refuse-me":
        return httpx.Response(400, json={"error": {"message": "bad model", "type": "invalid"}})
    return httpx.Response(200, json=COMPLETION)


async def async_openai_handler(request: httpx.Request) -> httpx.Response:
    return openai_handler(request)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LogStore]:
    log_store = open_log_store(f"sqlite:///{tmp_path / 'logs.db'}")
    yield log_store
    log_store.close()


@pytest.fixture
def openai_client() -> Iterator[openai.OpenAI]:
    with httpx.Client(transport=httpx.MockTransport(openai_handler)) as http:
        yield openai.OpenAI(
            api_key="sk-test", base_url="http://llm.test/v1", http_client=http, max_retries=0
        )


def stored(store: LogStore, workload: str = "router") -> list[ChatLog]:
    records = list(store.iter_recent("aiva", workload, limit=100))
    assert all(isinstance(r, ChatLog) for r in records)
    return [r for r in records if isinstance(r, ChatLog)]


def test_sync_completion_is_logged_to_the_store(
    store: LogStore, openai_client: openai.OpenAI
) -> None:
    messages: list[Any] = [{"role": "user", "content": "where is order 7?"}]
    before = int(time.time() * 1000)
    with FlywheelLogger(StoreSink(store), flush_interval_s=0.05) as logger:
        client = wrap_openai(openai_client, logger=logger, client_id="aiva", workload_id="router")
        response = client.chat.completions.create(
            model="big-model",
            messages=messages,
            tools=TOOLS,
            temperature=0.1,
            extra_headers={"X-Secret": "s3cret"},
        )
        assert isinstance(response, openai.types.chat.ChatCompletion)
        messages.append(response.choices[0].message)  # the app keeps using its list
    (record,) = stored(store)
    assert record.request["model"] == "big-model"
    assert record.request["messages"] == [{"role": "user", "content": "where is order 7?"}]
    assert record.request["tools"] == TOOLS
    assert "extra_headers" not in record.request
    assert b"s3cret" not in orjson.dumps(record.model_dump(mode="json"))
    tool_call = record.response["choices"][0]["message"]["tool_calls"][0]
    assert tool_call["function"]["arguments"] == '{"id": 7}'
    assert before <= record.timestamp <= int(time.time() * 1000)
    assert logger.stats().sent == 1


def test_message_objects_from_a_previous_response_are_serialised(
    store: LogStore, openai_client: openai.OpenAI
) -> None:
    with FlywheelLogger(StoreSink(store)) as logger:
        client = wrap_openai(openai_client, logger=logger, client_id="aiva", workload_id="router")
        messages: list[Any] = [{"role": "user", "content": "order 7?"}]
        first = client.chat.completions.create(model="big-model", messages=messages)
        messages += [
            first.choices[0].message,
            {"role": "tool", "tool_call_id": "call_1", "content": '{"status": "shipped"}'},
        ]
        client.with_options(timeout=5).chat.completions.create(model="big-model", messages=messages)
    records = sorted(stored(store), key=lambda r: len(r.request["messages"]))
    assert len(records) == 2
    second = records[1].request["messages"]
    assert second[1]["role"] == "assistant"
    assert second[1]["tool_calls"][0]["id"] == "call_1"


def test_async_client_is_logged(store: LogStore) -> None:
    async def run(logger: FlywheelLogger) -> str:
        transport = httpx.MockTransport(async_openai_handler)
        async with httpx.AsyncClient(transport=transport) as http:
            raw = openai.AsyncOpenAI(api_key="sk", base_url="http://llm.test/v1", http_client=http)
            client = wrap_openai(raw, logger=logger, client_id="aiva", workload_id="router")
            response = await client.chat.completions.create(
                model="big-model", messages=[{"role": "user", "content": "hi"}]
            )
            return response.id

    with FlywheelLogger(StoreSink(store)) as logger:
        assert asyncio.run(run(logger)) == "chatcmpl-1"
    assert len(stored(store)) == 1


def test_streaming_is_passed_through_and_counted(
    store: LogStore, openai_client: openai.OpenAI
) -> None:
    with FlywheelLogger(StoreSink(store)) as logger:
        client = wrap_openai(openai_client, logger=logger, client_id="aiva", workload_id="router")
        with client.chat.completions.create(
            model="big-model", messages=[{"role": "user", "content": "hi"}], stream=True
        ) as stream:
            text = "".join(chunk.choices[0].delta.content or "" for chunk in stream)
        assert text == "hi"
    assert logger.stats().skipped_streaming == 1
    assert stored(store) == []


def test_app_errors_propagate_unchanged_and_are_not_logged(
    store: LogStore, openai_client: openai.OpenAI
) -> None:
    with FlywheelLogger(StoreSink(store)) as logger:
        client = wrap_openai(openai_client, logger=logger, client_id="aiva", workload_id="router")
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(
                model="refuse-me", messages=[{"role": "user", "content": "hi"}]
            )
    assert logger.stats().enqueued == 0


class BrokenSink:
    """A sink whose delivery always fails."""

    def send(self, records: Sequence[ChatLog | RetrievalLog]) -> None:
        raise LogDeliveryFailed("down")

    def close(self) -> None:
        raise RuntimeError("close failed too")


def test_logging_failures_never_reach_the_app(openai_client: openai.OpenAI) -> None:
    with capture_logs() as events:
        logger = FlywheelLogger(BrokenSink())
        client = wrap_openai(openai_client, logger=logger, client_id="aiva", workload_id="router")
        response = client.chat.completions.create(
            model="big-model", messages=[{"role": "user", "content": "hi"}]
        )
        assert response.id == "chatcmpl-1"
        logger.close()
    assert logger.stats().failed == 1
    names = [e["event"] for e in events]
    assert "flywheel_log_delivery_failed" in names
    assert "flywheel_log_sink_close_failed" in names


def test_invalid_ids_are_counted_not_raised(openai_client: openai.OpenAI, store: LogStore) -> None:
    with FlywheelLogger(StoreSink(store)) as logger:
        client = wrap_openai(openai_client, logger=logger, client_id="bad id!", workload_id="w")
        client.chat.completions.create(
            model="big-model", messages=[{"role": "user", "content": "x"}]
        )
        logger.log({"query": "no ids"})
    assert logger.stats().invalid == 2
    assert store.list_workloads() == []


class GatedSink:
    """A sink that blocks until released, to fill the queue while delivery is stuck."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.received: list[str] = []

    def send(self, records: Sequence[ChatLog | RetrievalLog]) -> None:
        self.entered.set()
        self.gate.wait(10)
        self.received += [r.workload_id for r in records]

    def close(self) -> None:
        self.gate.set()


def raw_retrieval(n: int) -> dict[str, Any]:
    return {
        "client_id": "aiva",
        "workload_id": f"w{n}",
        "timestamp": int(time.time() * 1000),
        "query": "q",
        "retrieved": [{"doc_id": "d", "text": "t"}],
    }


@pytest.mark.parametrize(
    ("overflow", "expected"),
    [("drop_oldest", ["w0", "w7", "w8", "w9"]), ("drop_newest", ["w0", "w1", "w2", "w3"])],
)
def test_full_queue_drops_and_counts_without_blocking(overflow: Any, expected: list[str]) -> None:
    sink = GatedSink()
    logger = FlywheelLogger(sink, max_queue=3, batch_size=1, overflow=overflow)
    logger.log(raw_retrieval(0))
    assert sink.entered.wait(5)  # w0 is in flight; the queue is empty again
    started = time.monotonic()
    for n in range(1, 10):
        logger.log(raw_retrieval(n))
    assert time.monotonic() - started < 1.0
    assert logger.stats().dropped == 6
    sink.gate.set()
    logger.close()
    assert sink.received == expected
    assert logger.stats().sent == 4


def test_the_app_call_does_not_wait_for_delivery(openai_client: openai.OpenAI) -> None:
    sink = GatedSink()
    logger = FlywheelLogger(sink, batch_size=1)
    client = wrap_openai(openai_client, logger=logger, client_id="aiva", workload_id="router")
    for _ in range(3):  # the first delivery blocks; the next calls must not
        client.chat.completions.create(
            model="big-model", messages=[{"role": "user", "content": "x"}]
        )
    assert sink.entered.wait(5)
    assert not logger.flush(timeout_s=0.05)  # still stuck behind the gate
    sink.gate.set()
    assert logger.flush(timeout_s=5)
    logger.close()
    assert logger.stats().sent == 3


def test_close_is_idempotent_and_later_logs_are_dropped(store: LogStore) -> None:
    logger = FlywheelLogger(StoreSink(store))
    logger.close()
    logger.close()
    logger.log(raw_retrieval(1))
    assert logger.stats().dropped == 1
    assert logger.flush(timeout_s=1)


# -- HTTP sink ------------------------------------------------------------------------------


def api_transport(
    store: LogStore, script: list[int], seen: list[httpx.Request]
) -> httpx.MockTransport:
    """A fake Flywheel API: answers the scripted statuses, then ingests for real."""

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if script:
            status = script.pop(0)
            if status == 0:
                raise httpx.ConnectError("refused", request=request)
            return httpx.Response(status)
        report = ingest_payload(request.content, request.headers.get("content-type"), store=store)
        return httpx.Response(200, json=report.to_dict())

    return httpx.MockTransport(handle)


def make_sink(transport: httpx.MockTransport) -> HttpSink:
    return HttpSink(
        "http://flywheel.test/", api_key="fw-key", transport=transport, backoff_s=0, max_attempts=3
    )


def test_http_sink_posts_ndjson_with_bearer_key(
    store: LogStore, openai_client: openai.OpenAI
) -> None:
    seen: list[httpx.Request] = []
    with FlywheelLogger(make_sink(api_transport(store, [], seen))) as logger:
        client = wrap_openai(openai_client, logger=logger, client_id="aiva", workload_id="router")
        for _ in range(3):
            client.chat.completions.create(
                model="big-model", messages=[{"role": "user", "content": "x"}]
            )
    assert len(stored(store)) == 3
    assert seen[0].url == "http://flywheel.test/api/logs"
    assert seen[0].headers["authorization"] == "Bearer fw-key"
    assert seen[0].headers["content-type"] == "application/x-ndjson"
    assert "fw-key" not in repr(make_sink(api_transport(store, [], [])))


@pytest.mark.parametrize("script", [[503, 0], [429]])
def test_http_sink_retries_transient_failures(store: LogStore, script: list[int]) -> None:
    seen: list[httpx.Request] = []
    sink = make_sink(api_transport(store, list(script), seen))
    with FlywheelLogger(sink) as logger:
        logger.log(raw_retrieval(1))
    assert len(seen) == len(script) + 1
    assert store.count("aiva", "w1") == 1
    assert logger.stats().sent == 1


@pytest.mark.parametrize(("script", "attempts"), [([401], 1), ([500, 500, 500], 3), ([0, 0, 0], 3)])
def test_http_sink_gives_up_and_counts(store: LogStore, script: list[int], attempts: int) -> None:
    seen: list[httpx.Request] = []
    with FlywheelLogger(make_sink(api_transport(store, list(script), seen))) as logger:
        logger.log(raw_retrieval(1))
    assert len(seen) == attempts
    assert logger.stats().failed == 1
    assert store.count("aiva", "w1") == 0


def test_http_sink_raises_for_direct_callers(store: LogStore) -> None:
    sink = make_sink(api_transport(store, [413], []))
    record = ChatLog(
        client_id="a", workload_id="b", timestamp=1, request={"m": 1}, response={"c": 1}
    )
    with pytest.raises(LogDeliveryFailed, match="413"):
        sink.send([record])
    sink.close()
