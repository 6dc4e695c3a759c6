"""The LogStore contract, run against SQLite and Elasticsearch alike."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from flywheel.domain.logs import ChatLog, LogKind, RetrievalLog, RetrievedPassage
from flywheel.errors import StoreUnavailable
from flywheel.stores.base import LogStore
from flywheel.stores.registry import open_log_store

T0 = 1_700_000_000_000


def chat(n: int, *, ts: int, client: str = "acme", workload: str = "router") -> ChatLog:
    """A chat record that carries its own serial number, to tell records apart."""
    return ChatLog(
        client_id=client,
        workload_id=workload,
        timestamp=ts,
        request={"model": "big", "messages": [{"role": "user", "content": f"question {n}"}]},
        response={"choices": [{"message": {"role": "assistant", "content": f"answer {n}"}}]},
    )


def serial(record: ChatLog | RetrievalLog) -> int:
    assert isinstance(record, ChatLog)
    return int(record.request["messages"][0]["content"].split()[-1])


def retrieval(n: int, *, ts: int, client: str = "acme", workload: str = "router") -> RetrievalLog:
    return RetrievalLog(
        client_id=client,
        workload_id=workload,
        timestamp=ts,
        query=f"how do I reset my password? #{n}",
        retrieved=[
            RetrievedPassage(
                doc_id="kb-1", text="Go to settings.", score=0.91, rank=0, source="kb"
            ),
            RetrievedPassage(doc_id="kb-7", text="Contact support.", score=None, rank=1),
        ],
        used_doc_ids=["kb-1"],
        clicked_doc_ids=[],
        feedback={"thumbs": "up", "note": "ça marche"} if n % 2 else None,
    )


def test_write_then_count_by_kind_and_since(log_store: LogStore) -> None:
    records = [chat(i, ts=T0 + i) for i in range(6)] + [retrieval(i, ts=T0 + i) for i in range(4)]

    assert log_store.write(iter(records)) == 10

    assert log_store.count("acme", "router") == 10
    assert log_store.count("acme", "router", kind=LogKind.chat) == 6
    assert log_store.count("acme", "router", kind=LogKind.retrieval) == 4
    assert log_store.count("acme", "router", since_ms=T0 + 3) == 3 + 1
    assert log_store.count("acme", "router", kind=LogKind.chat, since_ms=T0 + 5) == 1
    assert log_store.count("acme", "nobody") == 0


def test_write_of_nothing_writes_nothing(log_store: LogStore) -> None:
    assert log_store.write([]) == 0
    assert log_store.count("acme", "router") == 0


def test_iter_recent_pages_through_timestamp_ties_without_gaps_or_duplicates(
    log_store: LogStore,
) -> None:
    # 23 records, four per millisecond, so ties straddle every page boundary of 5.
    log_store.write([chat(i, ts=T0 + i // 4) for i in range(23)])

    got = list(log_store.iter_recent("acme", "router", limit=17, batch_size=5))

    stamps = [r.timestamp for r in got]
    assert len(got) == 17
    assert len({serial(r) for r in got}) == 17
    assert stamps == sorted(stamps, reverse=True)
    # Everything strictly newer than the oldest returned record was returned.
    assert {serial(r) for r in got} >= {i for i in range(23) if T0 + i // 4 > stamps[-1]}

    everything = list(log_store.iter_recent("acme", "router", limit=1000, batch_size=5))
    assert sorted(serial(r) for r in everything) == list(range(23))
    assert [r.timestamp for r in everything] == sorted(
        (r.timestamp for r in everything), reverse=True
    )


def test_iter_recent_with_limit_beyond_count_returns_all(log_store: LogStore) -> None:
    log_store.write([chat(i, ts=T0 + i) for i in range(7)])

    got = list(log_store.iter_recent("acme", "router", limit=50, batch_size=3))

    assert [serial(r) for r in got] == [6, 5, 4, 3, 2, 1, 0]
    assert list(log_store.iter_recent("acme", "router", limit=0)) == []


def test_iter_recent_filters_by_kind(log_store: LogStore) -> None:
    log_store.write([chat(i, ts=T0 + 2 * i) for i in range(3)])
    log_store.write([retrieval(i, ts=T0 + 2 * i + 1) for i in range(3)])

    got = list(log_store.iter_recent("acme", "router", limit=10, kind=LogKind.retrieval))

    assert [r.timestamp for r in got] == [T0 + 5, T0 + 3, T0 + 1]
    assert all(isinstance(r, RetrievalLog) for r in got)


def test_pairs_are_isolated(log_store: LogStore) -> None:
    log_store.write(
        [
            chat(0, ts=T0),
            chat(1, ts=T0, workload="other"),
            chat(2, ts=T0, client="globex"),
            chat(3, ts=T0 + 1),
        ]
    )

    assert [serial(r) for r in log_store.iter_recent("acme", "router", limit=10)] == [3, 0]
    assert [serial(r) for r in log_store.iter_recent("acme", "other", limit=10)] == [1]
    assert log_store.count("globex", "router") == 1
    assert log_store.count("globex", "other") == 0


def test_retrieval_records_round_trip(log_store: LogStore) -> None:
    originals = [retrieval(i, ts=T0 + i) for i in range(3)]
    log_store.write(originals)

    got = list(log_store.iter_recent("acme", "router", limit=10))

    assert got == originals[::-1]


def test_chat_records_round_trip_nested_unicode_and_large(log_store: LogStore) -> None:
    original = ChatLog(
        client_id="acme",
        workload_id="agent.node-1",
        timestamp=T0,
        request={
            "model": "big",
            "messages": [
                {"role": "system", "content": "Réponds en français. 日本語も可。 🚀"},
                {"role": "user", "content": "x" * 60_000},
            ],
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "parameters": {"type": "object", "properties": {"city": {}}},
                    },
                }
            ],
            "temperature": 0.25,
            "stream": False,
            "user": None,
        },
        response={
            "choices": [
                {
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "call_1",
                                "type": "function",
                                "function": {
                                    "name": "get_weather",
                                    "arguments": '{"city":"Zürich"}',
                                },
                            }
                        ],
                    }
                }
            ],
            "usage": {"prompt_tokens": 15_012, "completion_tokens": 9},
        },
    )
    log_store.write([original])

    assert list(log_store.iter_recent("acme", "agent.node-1", limit=1)) == [original]


def test_delete_removes_only_that_pair(log_store: LogStore) -> None:
    log_store.write([chat(i, ts=T0 + i) for i in range(4)] + [chat(9, ts=T0, workload="other")])

    assert log_store.delete("acme", "router") == 4
    assert log_store.count("acme", "router") == 0
    assert list(log_store.iter_recent("acme", "router", limit=10)) == []
    assert log_store.count("acme", "other") == 1
    assert log_store.delete("acme", "router") == 0


def test_list_workloads_counts_each_pair_and_kind(log_store: LogStore) -> None:
    assert log_store.list_workloads() == []
    log_store.write(
        [chat(i, ts=T0 + i) for i in range(3)]
        + [retrieval(i, ts=T0 + 10 + i) for i in range(2)]
        + [chat(i, ts=T0 + 100 + i, client="globex", workload="summarize") for i in range(4)]
    )

    got = {
        (w.client_id, w.workload_id, w.kind): (w.count, w.newest_timestamp)
        for w in log_store.list_workloads()
    }

    assert got == {
        ("acme", "router", LogKind.chat): (3, T0 + 2),
        ("acme", "router", LogKind.retrieval): (2, T0 + 11),
        ("globex", "summarize", LogKind.chat): (4, T0 + 103),
    }


def test_concurrent_writers_and_readers_share_one_store(log_store: LogStore) -> None:
    def write(worker: int) -> int:
        return log_store.write([chat(100 * worker + i, ts=T0 + i) for i in range(25)])

    def read(_: int) -> int:
        return sum(1 for _ in log_store.iter_recent("acme", "router", limit=1000, batch_size=7))

    with ThreadPoolExecutor(max_workers=8) as pool:
        writes = [pool.submit(write, worker) for worker in range(4)]
        reads = [pool.submit(read, worker) for worker in range(4)]

    assert [f.result() for f in writes] == [25] * 4
    assert all(0 <= f.result() <= 100 for f in reads)
    assert log_store.count("acme", "router") == 100
    assert len({serial(r) for r in log_store.iter_recent("acme", "router", limit=1000)}) == 100


def test_ping_answers(log_store: LogStore) -> None:
    log_store.ping()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_elasticsearch_is_store_unavailable_without_credentials() -> None:
    url = f"http://elastic:s3cret@127.0.0.1:{_closed_port()}"
    store = open_log_store(url, index="flywheel-test-unreachable")
    try:
        with pytest.raises(StoreUnavailable, match="Elasticsearch") as info:
            store.ping()
        assert "s3cret" not in str(info.value)
        assert "127.0.0.1" in str(info.value)
        with pytest.raises(StoreUnavailable):
            store.count("acme", "router")
    finally:
        store.close()


def test_unusable_sqlite_path_is_store_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")

    with pytest.raises(StoreUnavailable, match="SQLite"):
        open_log_store(f"sqlite:///{blocker / 'logs.db'}")
