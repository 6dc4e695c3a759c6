"""Elasticsearch log store: the production backend for ``ELASTICSEARCH_URL``.

The index gets an explicit mapping (and an index template with the same mapping, so an index
that is deleted and re-created by a bulk write keeps it): ids and kind are keywords, the
timestamp is a date in epoch milliseconds, and the request/response/retrieved/feedback bodies
are stored but not indexed, so arbitrary OpenAI payloads never grow the mapping. The mapping is
``strict``: a document the store could not read back is refused at write time instead.

The index is prepared on first use, not at construction, so a process can start (and report
the store unhealthy through :meth:`ElasticLogStore.ping`) while Elasticsearch is down.

Documents written by the reference blueprint's collectors have no ``kind``; they are read
(and counted) as chat records.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from elasticsearch import ApiError, BadRequestError, Elasticsearch, TransportError
from elasticsearch.helpers import streaming_bulk
from elasticsearch.serializer import OrjsonSerializer

from flywheel.domain.logs import LOG_RECORD_ADAPTER, LogKind, WorkloadCount
from flywheel.errors import ConfigError, NotFound, StoreUnavailable, ValidationFailed
from flywheel.stores.base import LogRecordT

REQUEST_TIMEOUT_S = 30.0
#: delete_by_query runs synchronously over the whole pair; give it room beyond one request.
DELETE_TIMEOUT_S = 600.0
MAX_RETRIES = 3
#: Backoff before re-sending records rejected for load: doubles from the initial wait.
INITIAL_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
#: Records per bulk request: ~2 MB for 2 KB chat records.
BULK_CHUNK = 1000
BULK_MAX_BYTES = 20 * 1024 * 1024
#: How long a point in time survives between two pages; renewed by every page.
PIT_KEEP_ALIVE = "5m"
#: Upper bound on clients and on workloads per client in list_workloads (terms buckets).
MAX_PAIRS = 10_000
#: Beats the built-in ``logs-*-*`` data-stream template (priority 100) should the index match it.
TEMPLATE_PRIORITY = 500
#: Item statuses worth retrying later rather than fixing the records.
_TRANSIENT = frozenset({429, 500, 502, 503, 504})
#: The item status the write re-sends (Elasticsearch's "rejected execution", too busy).
_THROTTLED = 429

_STORED_ONLY = {"type": "object", "enabled": False}
MAPPING: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "client_id": {"type": "keyword"},
        "workload_id": {"type": "keyword"},
        "kind": {"type": "keyword"},
        "timestamp": {"type": "date", "format": "epoch_millis"},
        "request": _STORED_ONLY,
        "response": _STORED_ONLY,
        "query": {"type": "text"},
        "retrieved": _STORED_ONLY,
        "used_doc_ids": {"type": "keyword", "ignore_above": 1024},
        "clicked_doc_ids": {"type": "keyword", "ignore_above": 1024},
        "feedback": _STORED_ONLY,
    },
}
#: ``_shard_doc`` is the point-in-time tiebreaker: unique and cheap, no extra field needed.
_SORT = [{"timestamp": {"order": "desc"}}, {"_shard_doc": {"order": "desc"}}]
_NEWEST = {"newest": {"max": {"field": "timestamp"}}}
_KINDS = frozenset(kind.value for kind in LogKind)
#: "dynamic introduction of [query] within [_doc]", "failed to parse field [timestamp] of ..."
_FIELD_IN_REASON = re.compile(
    r"(?:dynamic introduction of|failed to parse field) \[([^\]]+)\](?: within \[([^\]]+)\])?"
)


def _newer(a: float | None, b: float | None) -> float | None:
    return max((t for t in (a, b) if t is not None), default=None)


def _to_domain(source: dict[str, Any]) -> LogRecordT:
    source.setdefault("kind", LogKind.chat.value)
    return LOG_RECORD_ADAPTER.validate_python(source)


def _pair_query(
    client_id: str, workload_id: str, kind: LogKind | None = None, since_ms: int | None = None
) -> dict[str, Any]:
    filters: list[dict[str, Any]] = [
        {"term": {"client_id": client_id}},
        {"term": {"workload_id": workload_id}},
    ]
    if kind is LogKind.chat:
        filters.append(
            {
                "bool": {
                    "should": [
                        {"term": {"kind": kind.value}},
                        {"bool": {"must_not": [{"exists": {"field": "kind"}}]}},
                    ],
                    "minimum_should_match": 1,
                }
            }
        )
    elif kind is not None:
        filters.append({"term": {"kind": kind.value}})
    if since_ms is not None:
        filters.append({"range": {"timestamp": {"gte": since_ms}}})
    return {"bool": {"filter": filters}}


def _refused_field(reason: str) -> list[str]:
    """The field an item error names (``[query]`` in a strict-mapping refusal), as a loc tail.

    Elasticsearch puts the field only in the reason text; empty when it names none.
    """
    match = _FIELD_IN_REASON.search(reason)
    if match is None:
        return []
    name, parent = match.group(1), match.group(2)
    return [name if parent in (None, "_doc") else f"{parent}.{name}"]


@dataclass
class _BulkOutcome:
    """What the attempts of one write produced: items written, items refused for good."""

    written: int = 0
    #: ``(input position, item status, reason)``
    failed: list[tuple[int, int, str]] = field(default_factory=list)


def _public_url(url: str) -> str:
    """The URL without credentials, fit for messages."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


class ElasticLogStore:
    """:class:`~flywheel.stores.base.LogStore` on one Elasticsearch index."""

    def __init__(
        self,
        client: Elasticsearch,
        *,
        index: str,
        url: str,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``sleep`` waits out the backoff between re-sends of throttled records (tests pass
        a recorder so they need not wait)."""
        self._es = client
        self._sleep = sleep
        self._index = index
        self._url = _public_url(url)
        self._ready = False
        self._ready_lock = threading.Lock()

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        index: str,
        verify_certs: bool = True,
        ca_certs: str | None = None,
        request_timeout: float = REQUEST_TIMEOUT_S,
    ) -> ElasticLogStore:
        """Build a client for ``url`` (credentials may be in the URL); no request is sent yet.

        ``ca_certs`` is a PEM bundle of a private CA to verify the server against
        (``ES_CA_CERTS``); without it only public CAs (certifi) verify.

        Raises:
            ConfigError: the URL cannot be parsed.
        """
        tls: dict[str, Any] = {"ca_certs": ca_certs} if ca_certs else {}
        try:
            client = Elasticsearch(
                url,
                request_timeout=request_timeout,
                retry_on_timeout=True,
                max_retries=MAX_RETRIES,
                verify_certs=verify_certs,
                serializer=OrjsonSerializer(),
                **tls,
            )
        except ValueError as exc:
            raise ConfigError(f"ELASTICSEARCH_URL {_public_url(url)!r} is invalid: {exc}") from exc
        return cls(client, index=index, url=url)

    @contextmanager
    def _translate(self, action: str) -> Iterator[None]:
        try:
            yield
        except ApiError as exc:
            status = exc.meta.status
            message = f"Elasticsearch at {self._url} failed to {action}: {exc}"
            if status == 404:
                raise NotFound(message) from exc
            if status in _TRANSIENT:
                raise StoreUnavailable(message) from exc
            if status in (401, 403):
                raise ConfigError(
                    f"{message} (check the credentials in ELASTICSEARCH_URL)"
                ) from exc
            # Any other refusal means the server or the index does not accept our requests
            # (e.g. an existing index with a conflicting mapping): a setup problem.
            raise ConfigError(message) from exc
        except TransportError as exc:
            raise StoreUnavailable(
                f"Elasticsearch at {self._url} is unreachable ({action}): {exc}"
            ) from exc

    def _ensure_index(self) -> None:
        if self._ready:
            return
        with self._ready_lock:
            if self._ready:
                return
            with self._translate(f"prepare index {self._index!r}"):
                self._es.indices.put_index_template(
                    name=f"flywheel-logs-{self._index}",
                    index_patterns=[self._index],
                    priority=TEMPLATE_PRIORITY,
                    template={"mappings": MAPPING},
                )
                try:
                    self._es.indices.create(index=self._index, mappings=MAPPING)
                except BadRequestError as exc:
                    if exc.error != "resource_already_exists_exception":
                        raise
            self._ready = True

    def write(self, records: Iterable[LogRecordT]) -> int:
        """Bulk-index records, then refresh once so they are searchable on return.

        Items Elasticsearch rejects for load (429) are re-sent here, not by the bulk helper:
        its retries yield the re-sent items after the rest of their chunk, which would break
        the one-result-per-input-position order the error positions are read from.

        Raises:
            ValidationFailed: Elasticsearch refused some records (the others were written);
                each error's ``loc`` is ``["records", position, field]`` (field when ES
                names one), so callers can map refusals back to their input.
            StoreUnavailable: Elasticsearch is unreachable or kept rejecting for load.
        """
        self._ensure_index()
        # Pre-serialised sources skip the client's per-document dict walk.
        batch = ((position, record.model_dump_json()) for position, record in enumerate(records))
        outcome = _BulkOutcome()
        with self._translate(f"bulk-index into {self._index!r}"):
            throttled = self._bulk(batch, outcome)
            for attempt in range(MAX_RETRIES):
                if not throttled:
                    break
                self._sleep(min(MAX_BACKOFF_S, INITIAL_BACKOFF_S * 2**attempt))
                throttled = self._bulk(((p, source) for p, source, _ in throttled), outcome)
            outcome.failed.extend((p, _THROTTLED, reason) for p, _, reason in throttled)
            if outcome.written:
                self._es.indices.refresh(index=self._index)
        if outcome.failed:
            self._raise_bulk_failures(sorted(outcome.failed), written=outcome.written)
        return outcome.written

    def _bulk(
        self, batch: Iterable[tuple[int, str]], outcome: _BulkOutcome
    ) -> list[tuple[int, str, str]]:
        """Send ``(position, source)`` pairs once; count writes and refusals into ``outcome``.

        Returns the ``(position, source, reason)`` of the items rejected for load (429), to be
        re-sent. Without helper retries, ``streaming_bulk`` yields exactly one result per
        action in input order, so a FIFO of the sent pairs names each result's position; it
        holds at most one chunk, as the helper reads the input a chunk ahead of its results.
        """
        sent: deque[tuple[int, str]] = deque()

        def sources() -> Iterator[str]:
            for position, source in batch:
                sent.append((position, source))
                yield source

        results = streaming_bulk(
            self._es,
            sources(),
            index=self._index,
            chunk_size=BULK_CHUNK,
            max_chunk_bytes=BULK_MAX_BYTES,
            raise_on_error=False,
            max_retries=0,
        )
        throttled: list[tuple[int, str, str]] = []
        for ok, item in results:
            position, source = sent.popleft()
            if ok:
                outcome.written += 1
                continue
            result = next(iter(item.values()))
            error = result.get("error", {})
            reason = f"{error.get('type', 'error')}: {error.get('reason', error)}"
            status = int(result.get("status", 0))
            if status == _THROTTLED:
                throttled.append((position, source, reason))
            else:
                outcome.failed.append((position, status, reason))
        return throttled

    def _raise_bulk_failures(self, failed: list[tuple[int, int, str]], *, written: int) -> None:
        message = (
            f"Elasticsearch at {self._url} refused {len(failed)} of {written + len(failed)} "
            f"log records ({written} written); first: {failed[0][2]}"
        )
        if all(status in _TRANSIENT for _, status, _ in failed):
            raise StoreUnavailable(message)
        raise ValidationFailed(
            message,
            [
                {"loc": ["records", position, *_refused_field(reason)], "msg": reason}
                for position, _, reason in failed
            ],
        )

    def count(
        self,
        client_id: str,
        workload_id: str,
        *,
        kind: LogKind | None = None,
        since_ms: int | None = None,
    ) -> int:
        """Count a pair's records with ``_count``."""
        self._ensure_index()
        with self._translate("count logs"):
            response = self._es.count(
                index=self._index, query=_pair_query(client_id, workload_id, kind, since_ms)
            )
        return int(response["count"])

    def iter_recent(
        self,
        client_id: str,
        workload_id: str,
        *,
        limit: int,
        kind: LogKind | None = None,
        batch_size: int = 1000,
    ) -> Iterator[LogRecordT]:
        """Yield the newest ``limit`` records through a point in time and ``search_after``.

        The point in time freezes the view, so writes during the read neither shift pages nor
        produce duplicates; it is closed when the iterator finishes or is discarded.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if limit < 1:
            return
        self._ensure_index()
        query = _pair_query(client_id, workload_id, kind)
        with self._translate("open a point in time"):
            pit_id: str = self._es.open_point_in_time(index=self._index, keep_alive=PIT_KEEP_ALIVE)[
                "id"
            ]
        try:
            remaining = limit
            after: list[Any] | None = None
            while remaining > 0:
                size = min(batch_size, remaining)
                with self._translate("read logs"):
                    response = self._es.search(
                        pit={"id": pit_id, "keep_alive": PIT_KEEP_ALIVE},
                        query=query,
                        sort=_SORT,
                        size=size,
                        search_after=after,
                        track_total_hits=False,
                    )
                pit_id = response.get("pit_id", pit_id)
                hits = response["hits"]["hits"]
                for hit in hits:
                    yield _to_domain(hit["_source"])
                if len(hits) < size:
                    return
                remaining -= len(hits)
                after = hits[-1]["sort"]
        finally:
            # A point in time we fail to close expires by itself after PIT_KEEP_ALIVE.
            with suppress(ApiError, TransportError):
                self._es.close_point_in_time(id=pit_id)

    def delete(self, client_id: str, workload_id: str) -> int:
        """Delete a pair with ``delete_by_query`` and refresh, so counts drop on return."""
        self._ensure_index()
        with self._translate("delete logs"):
            response = self._es.options(request_timeout=DELETE_TIMEOUT_S).delete_by_query(
                index=self._index,
                query=_pair_query(client_id, workload_id),
                refresh=True,
                conflicts="proceed",
            )
        return int(response["deleted"])

    def list_workloads(self) -> list[WorkloadCount]:
        """Every pair and kind with its count and newest timestamp, from nested terms buckets.

        Nested ``terms`` rather than ``composite``: the Elasticsearch-API test server lacks
        ``composite``, and the pair count a console lists stays far below MAX_PAIRS.
        """
        self._ensure_index()
        kinds = {
            "kinds": {"terms": {"field": "kind", "size": len(LogKind)}, "aggs": _NEWEST},
            # Blueprint documents have no kind; they are chat records (see module docstring).
            "untyped": {"missing": {"field": "kind"}, "aggs": _NEWEST},
        }
        workloads = {"terms": {"field": "workload_id", "size": MAX_PAIRS}, "aggs": kinds}
        aggs = {
            "clients": {
                "terms": {"field": "client_id", "size": MAX_PAIRS},
                "aggs": {"workloads": workloads},
            }
        }
        with self._translate("list workloads"):
            response = self._es.search(index=self._index, size=0, aggs=aggs)
        found: list[WorkloadCount] = []
        for client in response["aggregations"]["clients"]["buckets"]:
            for workload in client["workloads"]["buckets"]:
                per_kind = {
                    b["key"]: (b["doc_count"], b["newest"]["value"])
                    for b in workload["kinds"]["buckets"]
                }
                untyped = workload["untyped"]
                if untyped["doc_count"]:
                    count, newest = per_kind.get(LogKind.chat.value, (0, None))
                    per_kind[LogKind.chat.value] = (
                        count + untyped["doc_count"],
                        _newer(newest, untyped["newest"]["value"]),
                    )
                found.extend(
                    WorkloadCount(
                        client_id=client["key"],
                        workload_id=workload["key"],
                        kind=LogKind(key),
                        count=count,
                        newest_timestamp=None if newest is None else int(newest),
                    )
                    for key, (count, newest) in per_kind.items()
                    if key in _KINDS  # skip kinds this version cannot read
                )
        return sorted(found, key=lambda w: (w.client_id, w.workload_id, w.kind.value))

    def ping(self) -> None:
        """Ask the cluster for its info.

        Raises:
            StoreUnavailable: it does not answer, or refuses.
        """
        try:
            self._es.info()
        except (ApiError, TransportError) as exc:
            raise StoreUnavailable(
                f"Elasticsearch at {self._url} does not answer: {type(exc).__name__}: {exc}"
            ) from exc

    def close(self) -> None:
        """Close the client's connection pool."""
        self._es.close()
