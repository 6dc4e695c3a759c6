"""What only the Elasticsearch adapter promises: its index mapping and blueprint documents."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from elasticsearch import Elasticsearch

from flywheel.domain.logs import ChatLog, LogKind
from flywheel.stores.logs_elastic import ElasticLogStore


@pytest.fixture
def es_store(es_url: str, es_index: str) -> Iterator[ElasticLogStore]:
    store = ElasticLogStore.from_url(es_url, index=es_index)
    yield store
    store.close()


def test_index_gets_the_explicit_mapping(
    es_store: ElasticLogStore, es_admin: Elasticsearch, es_index: str
) -> None:
    es_store.count("acme", "router")  # the index is prepared on first use

    mapping = es_admin.indices.get_mapping(index=es_index)[es_index]["mappings"]

    assert mapping["dynamic"] == "strict"
    props = mapping["properties"]
    assert props["timestamp"] == {"type": "date", "format": "epoch_millis"}
    for field in ("client_id", "workload_id", "kind"):
        assert props[field]["type"] == "keyword"
    for body in ("request", "response", "retrieved", "feedback"):
        assert props[body]["enabled"] is False  # stored, never indexed field by field


def test_blueprint_documents_without_kind_read_as_chat(
    es_store: ElasticLogStore, es_admin: Elasticsearch, es_index: str
) -> None:
    es_store.count("acme", "router")
    doc = {
        "client_id": "acme",
        "workload_id": "router",
        "timestamp": 1_700_000_000_000,
        "request": {"messages": [{"role": "user", "content": "hi"}]},
        "response": {"choices": [{"message": {"role": "assistant", "content": "hello"}}]},
    }
    es_admin.index(index=es_index, document=doc, refresh=True)

    assert list(es_store.iter_recent("acme", "router", limit=5)) == [ChatLog(**doc)]
    assert es_store.count("acme", "router", kind=LogKind.chat) == 1
    assert es_store.count("acme", "router", kind=LogKind.retrieval) == 0
    [workload] = es_store.list_workloads()
    assert (workload.kind, workload.count, workload.newest_timestamp) == (
        LogKind.chat,
        1,
        doc["timestamp"],
    )
