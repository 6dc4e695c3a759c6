"""``POST /api/logs`` on behalf of a caller: ingestion limited to the caller's tenants.

:func:`~flywheel.services.ingestion.ingest_payload` validates and stores records; this
module adds the tenant rule. A key scoped to some clients may write only their records; the
others are rejected with a reason, and the rest of the batch is kept.

The rule is applied at the store boundary (a wrapper that withholds out-of-scope records)
because the ingestion engine has no scope parameter yet; the withheld records are then moved
from ``accepted`` to ``rejected`` in the report, with one reason per client. When ingestion
grows a per-record hook this becomes a per-record check with the record's index.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator

from flywheel.domain.log_validation import RecordError
from flywheel.domain.logs import LogKind, WorkloadCount
from flywheel.services.ingestion import IngestReport, ingest_payload
from flywheel.stores.base import LogRecordT, LogStore


class _ScopedWriter:
    """A log store that writes only records of allowed clients and counts the rest."""

    def __init__(self, store: LogStore, allowed: frozenset[str]) -> None:
        self._store = store
        self._allowed = allowed
        self.withheld: Counter[tuple[str, str, str]] = Counter()

    def write(self, records: Iterable[LogRecordT]) -> int:
        kept: list[LogRecordT] = []
        for record in records:
            if record.client_id in self._allowed:
                kept.append(record)
            else:
                self.withheld[(record.client_id, record.workload_id, record.kind.value)] += 1
        return self._store.write(kept) if kept else 0

    # The ingestion engine only writes; the rest of the port delegates unchanged.
    def count(
        self,
        client_id: str,
        workload_id: str,
        *,
        kind: LogKind | None = None,
        since_ms: int | None = None,
    ) -> int:
        return self._store.count(client_id, workload_id, kind=kind, since_ms=since_ms)

    def iter_recent(
        self,
        client_id: str,
        workload_id: str,
        *,
        limit: int,
        kind: LogKind | None = None,
        batch_size: int = 1000,
    ) -> Iterator[LogRecordT]:
        return self._store.iter_recent(
            client_id, workload_id, limit=limit, kind=kind, batch_size=batch_size
        )

    def delete(self, client_id: str, workload_id: str) -> int:
        return self._store.delete(client_id, workload_id)

    def list_workloads(self) -> list[WorkloadCount]:
        return self._store.list_workloads()

    def ping(self) -> None:
        self._store.ping()

    def close(self) -> None:
        """The wrapped store belongs to the app; closing is its owner's business."""


def _move_withheld(report: IngestReport, withheld: Counter[tuple[str, str, str]]) -> None:
    per_client: Counter[str] = Counter()
    for (client_id, workload_id, kind), n in withheld.items():
        per_client[client_id] += n
        report.workloads[(client_id, workload_id)] -= n
        report.kinds[kind] -= n
    report.workloads = +report.workloads
    report.kinds = +report.kinds
    for client_id, n in sorted(per_client.items()):
        report.accepted -= n
        for _ in range(n):
            report.add_error(
                RecordError(
                    index=-1,
                    line=None,
                    field="client_id",
                    reason=f"this API key may not write logs for client {client_id!r}",
                )
            )


def ingest_for(
    body: bytes,
    content_type: str | None,
    *,
    store: LogStore,
    scope: frozenset[str] | None,
    max_bytes: int,
) -> IngestReport:
    """Ingest a request body, rejecting records of clients outside ``scope`` (None: all)."""
    if scope is None:
        return ingest_payload(body, content_type, store=store, max_bytes=max_bytes)
    writer = _ScopedWriter(store, scope)
    report = ingest_payload(body, content_type, store=writer, max_bytes=max_bytes)
    _move_withheld(report, writer.withheld)
    return report
