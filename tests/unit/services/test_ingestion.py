"""Streaming ingestion: every valid record is stored, every invalid one reported with a reason."""

from __future__ import annotations

import io
import random
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from elasticsearch import Elasticsearch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flywheel.domain.logs import ChatLog, LogKind, RetrievalLog
from flywheel.errors import StoreUnavailable, ValidationFailed
from flywheel.services.ingestion import (
    IngestReport,
    PayloadTooLarge,
    ingest_lines,
    ingest_payload,
    iter_lines,
)
from flywheel.stores.base import LogStore
from flywheel.stores.logs_elastic import MAPPING, ElasticLogStore
from flywheel.stores.registry import open_log_store

NOW_MS = 1_750_000_000_000


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LogStore]:
    log_store = open_log_store(f"sqlite:///{tmp_path / 'logs.db'}")
    yield log_store
    log_store.close()


def chat(i: int = 0, **overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "client_id": "aiva",
        "workload_id": "router",
        "timestamp": NOW_MS - i,
        "request": {"model": "m", "messages": [{"role": "user", "content": f"q{i}"}]},
        "response": {"choices": [{"message": {"role": "assistant", "content": f"a{i}"}}]},
    }
    record.update(overrides)
    return record


def retrieval(i: int = 0, **overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "client_id": "aiva",
        "workload_id": "kb",
        "timestamp": NOW_MS - i,
        "query": f"q{i}",
        "retrieved": [{"doc_id": "d1", "text": "t"}],
        "used_doc_ids": ["d1"],
    }
    record.update(overrides)
    return record


def line(value: object) -> bytes:
    return orjson.dumps(value) + b"\n"


def ingest(lines: Iterable[bytes], store: LogStore, **kwargs: Any) -> IngestReport:
    return ingest_lines(lines, store=store, now_ms=NOW_MS, **kwargs)


# One bad line per kind of problem; each must be rejected with a reason and its line number.
BAD_LINES: list[tuple[bytes, str]] = [
    (b'{"client_id": "aiva", "workload_id": ', "not valid JSON"),
    (b"not json at all", "not valid JSON"),
    (line({k: v for k, v in chat().items() if k != "client_id"}), "client_id"),
    (line(chat(workload_id=None)), "workload_id"),
    (line(chat(timestamp="soon")), "ISO-8601"),
    (line(chat(request={"model": "m", "messages": [{"role": "robot", "content": "x"}]})), "role"),
    (
        line(
            chat(
                response={
                    "choices": [
                        {
                            "message": {
                                "role": "assistant",
                                "tool_calls": [{"function": {"name": "f", "arguments": "{x"}}],
                            }
                        }
                    ]
                }
            )
        ),
        "arguments",
    ),
    (b"\xff\xfe\xfa not utf-8\n", "UTF-8"),
    (line([1, 2, 3]), "JSON object"),
    (line(retrieval(used_doc_ids=["nope"])), "not among"),
]


def test_ten_thousand_mixed_lines_keep_every_valid_record(store: LogStore) -> None:
    rng = random.Random(7)
    lines: list[bytes] = []
    expected_valid = 0
    bad_line_numbers: dict[int, str] = {}
    for i in range(10_000):
        if rng.random() < 0.3:
            data, why = BAD_LINES[rng.randrange(len(BAD_LINES))]
            lines.append(data)
            bad_line_numbers[i + 1] = why
        else:
            lines.append(line(chat(i) if i % 5 else retrieval(i)))
            expected_valid += 1
    report = ingest(lines, store, batch_size=333, report=IngestReport(max_errors=20_000))

    assert report.accepted == expected_valid
    assert report.written == expected_valid
    assert report.rejected == len(bad_line_numbers)
    assert {e.line: e for e in report.errors}.keys() == bad_line_numbers.keys()
    for error in report.errors:
        assert error.line is not None
        expected = bad_line_numbers[error.line]
        assert expected in f"{error.field} {error.reason}", error
    stored = store.count("aiva", "router") + store.count("aiva", "kb")
    assert stored == expected_valid
    assert report.kinds["chat"] + report.kinds["retrieval"] == expected_valid


def test_stored_records_round_trip(store: LogStore) -> None:
    report = ingest([line(chat(1)), line(retrieval(2))], store)
    assert report.accepted == 2
    (stored_chat,) = store.iter_recent("aiva", "router", limit=5)
    assert isinstance(stored_chat, ChatLog)
    assert stored_chat.request["messages"][0]["content"] == "q1"
    (stored_retrieval,) = store.iter_recent("aiva", "kb", limit=5, kind=LogKind.retrieval)
    assert isinstance(stored_retrieval, RetrievalLog)


@pytest.mark.parametrize("lines", [[], [b""], [b"\n", b"  \r\n", b"\t\n"]])
def test_empty_input_reports_a_clear_message(store: LogStore, lines: list[bytes]) -> None:
    report = ingest(lines, store)
    assert (report.accepted, report.rejected, report.written) == (0, 0, 0)
    assert "empty" in report.summary()


def test_blank_lines_are_skipped_not_rejected(store: LogStore) -> None:
    report = ingest([b"\n", line(chat()), b"   \n"], store)
    assert (report.accepted, report.rejected, report.blank_lines) == (1, 0, 2)


def test_bom_crlf_and_missing_final_newline(store: LogStore) -> None:
    lines = [b"\xef\xbb\xbf" + orjson.dumps(chat(1)) + b"\r\n", orjson.dumps(chat(2))]
    report = ingest(lines, store)
    assert report.accepted == 2, report.errors


def test_utf16_input_is_named(store: LogStore) -> None:
    report = ingest([b"\xff\xfe{\x00}\x00\n", line(chat())], store)
    assert report.accepted == 0
    assert "UTF-16" in report.summary()


def test_non_utf8_line_names_the_byte_and_keeps_neighbours(store: LogStore) -> None:
    report = ingest([line(chat(1)), b'{"query": "caf\xe9"}\n', line(chat(2))], store)
    assert report.accepted == 2
    (error,) = report.errors
    assert error.line == 2
    assert "0xe9" in error.reason


def test_huge_line_is_rejected_unparsed_and_the_next_line_survives(store: LogStore) -> None:
    huge = b'{"pad": "' + b"x" * 1_000_000 + b'"}\n'
    stream = io.BytesIO(line(chat(1)) + huge + line(chat(2)))
    report = ingest(iter_lines(stream, max_line_bytes=4096), store, max_line_bytes=4096)
    assert report.accepted == 2
    (error,) = report.errors
    assert error.line == 2
    assert "longer than 4096 bytes" in error.reason


def test_iter_lines_bounds_memory_per_line() -> None:
    stream = io.BytesIO(b"a" * 100_000 + b"\nshort\nlast")
    assert [len(c) for c in iter_lines(stream, max_line_bytes=10)] == [11, 6, 4]


def test_timestamp_normalisation_is_counted_and_noted(store: LogStore) -> None:
    lines = [
        line(chat(timestamp=NOW_MS)),
        line(chat(timestamp=1_700_000_000)),
        line(chat(timestamp="2024-05-01T12:00:00Z")),
        line(chat(timestamp="2024-05-01T12:00:00Z")),
    ]
    report = ingest(lines, store)
    assert dict(report.timestamp_formats) == {"epoch_ms": 1, "epoch_s": 1, "iso8601": 2}
    notes = " ".join(report.normalisation_notes())
    assert "1 timestamps were epoch seconds" in notes
    assert "2 timestamps were ISO-8601" in notes
    assert report.to_dict()["timestamp_formats"]["iso8601"] == 2


def test_id_flags_override_and_count(store: LogStore) -> None:
    no_ids = {k: v for k, v in chat().items() if k not in ("client_id", "workload_id")}
    report = ingest([line(no_ids), line(chat())], store, client_id="acme", workload_id="support")
    assert report.accepted == 2
    assert report.ids_overridden == 1
    assert report.workloads == {("acme", "support"): 2}
    assert store.count("acme", "support") == 2


def test_per_workload_and_kind_counts(store: LogStore) -> None:
    lines = [line(chat(1)), line(chat(2, workload_id="other")), line(retrieval(3))]
    report = ingest(lines, store)
    assert report.workloads == {("aiva", "router"): 1, ("aiva", "other"): 1, ("aiva", "kb"): 1}
    assert report.kinds == {"chat": 2, "retrieval": 1}
    workloads = report.to_dict()["workloads"]
    assert {"client_id": "aiva", "workload_id": "kb", "count": 1} in workloads


def test_error_list_is_capped_but_all_rejections_counted(store: LogStore) -> None:
    report = ingest([b"{bad\n"] * 12, store, report=IngestReport(max_errors=5))
    assert report.rejected == 12
    assert len(report.errors) == 5
    assert report.errors_truncated
    assert report.to_dict()["errors_truncated"] is True


def test_progress_is_reported(store: LogStore) -> None:
    seen: list[int] = []
    ingest([line(chat(i)) for i in range(2500)], store, on_progress=lambda r: seen.append(r.seen))
    assert seen == [1000, 2000, 2500]


class _FailingStore:
    """A log store whose writes fail, to check the report survives a store outage."""

    def __init__(self, inner: LogStore) -> None:
        self.inner = inner
        self.calls = 0

    def write(self, records: Iterable[ChatLog | RetrievalLog]) -> int:
        self.calls += 1
        if self.calls > 1:
            raise StoreUnavailable("log store unreachable")
        return self.inner.write(records)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_store_failure_propagates_with_partial_report(store: LogStore) -> None:
    report = IngestReport()
    failing: Any = _FailingStore(store)
    with pytest.raises(StoreUnavailable):
        ingest([line(chat(i)) for i in range(10)], failing, batch_size=4, report=report)
    assert report.written == 4
    assert store.count("aiva", "router") == 4


# -- request bodies -------------------------------------------------------------------------


def payload(body: bytes, store: LogStore, content_type: str | None = None, **kw: Any) -> Any:
    return ingest_payload(body, content_type, store=store, now_ms=NOW_MS, **kw)


def test_json_array_body(store: LogStore) -> None:
    body = orjson.dumps([chat(1), {"client_id": "aiva"}, 7, retrieval(2)])
    report = payload(body, store, "application/json")
    assert (report.accepted, report.rejected) == (2, 2)
    assert [(e.index, e.line) for e in report.errors] == [(1, None), (2, None)]
    assert report.bytes_read == len(body)


def test_ndjson_body_with_and_without_content_type(store: LogStore) -> None:
    body = line(chat(1)) + b"{oops\n" + line(chat(2))
    for content_type in ("application/x-ndjson", None, "text/plain"):
        report = payload(body, store, content_type)
        assert (report.accepted, report.rejected) == (2, 1)
        assert report.errors[0].line == 2


def test_single_object_body(store: LogStore) -> None:
    body = orjson.dumps(chat(1), option=orjson.OPT_INDENT_2)
    report = payload(body, store, "application/json")
    assert report.accepted == 1


def test_bom_and_whitespace_before_array(store: LogStore) -> None:
    report = payload(b"\xef\xbb\xbf \n" + orjson.dumps([chat(1)]), store)
    assert report.accepted == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [(b"", "empty"), (b"  \n", "empty"), (b"[]", "empty array")],
)
def test_empty_bodies(store: LogStore, body: bytes, message: str) -> None:
    report = payload(body, store)
    assert report.accepted == report.rejected == 0
    assert message in report.summary()


def test_malformed_array_is_a_validation_error(store: LogStore) -> None:
    with pytest.raises(ValidationFailed) as exc_info:
        payload(b'[{"a": 1},', store, "application/json")
    assert exc_info.value.errors[0]["loc"] == ["body"]


def test_non_utf8_array_is_named(store: LogStore) -> None:
    with pytest.raises(ValidationFailed, match="UTF-8"):
        payload(b'["\xff"]', store)


def test_body_over_the_limit_is_refused_before_parsing(store: LogStore) -> None:
    with pytest.raises(PayloadTooLarge) as exc_info:
        payload(b"x" * 101, store, max_bytes=100)
    assert exc_info.value.limit == 100
    assert store.list_workloads() == []


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lines=st.lists(st.binary(max_size=200) | st.just(line(chat())), max_size=20))
def test_arbitrary_bytes_never_raise(store: LogStore, lines: list[bytes]) -> None:
    report = ingest(lines, store)
    assert report.accepted + report.rejected + report.blank_lines <= len(lines)
    assert report.written == report.accepted
    assert all(e.reason for e in report.errors)


# -- records the store refuses ----------------------------------------------------------------

#: Fields a chat-only version of the adapter knew; the retrieval ones came later.
_CHAT_FIELDS = ("client_id", "workload_id", "kind", "timestamp", "request", "response")
#: The strict mapping a chat-only version would have made: retrieval fields are unknown to it.
_CHAT_ONLY_MAPPING: dict[str, Any] = {
    **MAPPING,
    "properties": {name: MAPPING["properties"][name] for name in _CHAT_FIELDS},
}


@pytest.fixture
def chat_only_es_store(
    es_url: str, es_admin: Elasticsearch, es_index: str
) -> Iterator[ElasticLogStore]:
    """An ES store on an index that exists already with a strict, chat-only mapping."""
    es_admin.indices.create(index=es_index, mappings=_CHAT_ONLY_MAPPING)
    log_store = ElasticLogStore.from_url(es_url, index=es_index)
    yield log_store
    log_store.close()


def test_records_elasticsearch_refuses_are_reported_and_the_load_goes_on(
    chat_only_es_store: ElasticLogStore,
) -> None:
    # Lines 2, 5 and 7 are valid retrieval records the old strict mapping refuses; line 4
    # is invalid. Batches of 3 put refusals in the first, second and third batch.
    lines = [
        line(chat(0)),
        line(retrieval(1)),
        line(chat(2)),
        b"not json\n",
        line(retrieval(4)),
        line(chat(5)),
        line(retrieval(6)),
        line(chat(7)),
    ]

    report = ingest(lines, chat_only_es_store, batch_size=3)

    assert (report.accepted, report.rejected, report.written) == (4, 4, 4)
    refused = [e for e in report.errors if e.line in (2, 5, 7)]
    assert [(e.line, e.index, e.field) for e in refused] == [
        (2, 1, "query"),
        (5, 4, "query"),
        (7, 6, "query"),
    ]
    assert all("strict" in e.reason and "refused" in e.reason for e in refused)
    assert report.kinds == {"chat": 4}
    assert dict(report.workloads) == {("aiva", "router"): 4}
    assert chat_only_es_store.count("aiva", "router") == 4
    assert chat_only_es_store.count("aiva", "kb") == 0


def test_refusals_in_a_json_array_body_are_located_by_index(
    chat_only_es_store: ElasticLogStore,
) -> None:
    body = orjson.dumps([chat(0), retrieval(1), chat(2)])

    report = payload(body, chat_only_es_store, batch_size=2)

    assert (report.accepted, report.rejected, report.written) == (2, 1, 2)
    [error] = report.errors
    assert (error.index, error.line, error.field) == (1, None, "query")
    assert report.to_dict()["kinds"] == {"chat": 2}


class _RefusingStore:
    """A log store that refuses a batch with the errors given, writing nothing."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors

    def write(self, records: Iterable[ChatLog | RetrievalLog]) -> int:
        raise ValidationFailed("refused", self.errors)


@pytest.mark.parametrize(
    "errors",
    [[{"loc": ["body"], "msg": "bad"}], [{"loc": ["records", 9], "msg": "out of range"}], []],
)
def test_a_refusal_that_names_no_position_propagates(errors: list[dict[str, Any]]) -> None:
    # Without positions nobody can tell which records were written: counting is guesswork.
    refusing: Any = _RefusingStore(errors)
    with pytest.raises(ValidationFailed, match="refused"):
        ingest([line(chat(i)) for i in range(3)], refusing)
