"""Workloads: the ``(client_id, workload_id)`` pairs the log store holds, with record counts."""

from __future__ import annotations

from dataclasses import dataclass

from flywheel.domain.logs import LogKind
from flywheel.stores.base import LogStore

Scope = frozenset[str] | None


@dataclass(slots=True)
class WorkloadSummary:
    """One pair: its chat and retrieval record counts and newest record (epoch ms)."""

    client_id: str
    workload_id: str
    chat_records: int = 0
    retrieval_records: int = 0
    newest_timestamp: int | None = None


def list_workloads(logs: LogStore, *, scope: Scope = None) -> list[WorkloadSummary]:
    """Every pair the caller may see, sorted by client then workload."""
    pairs: dict[tuple[str, str], WorkloadSummary] = {}
    for row in logs.list_workloads():
        if scope is not None and row.client_id not in scope:
            continue
        key = (row.client_id, row.workload_id)
        item = pairs.setdefault(key, WorkloadSummary(row.client_id, row.workload_id))
        if row.kind is LogKind.chat:
            item.chat_records += row.count
        else:
            item.retrieval_records += row.count
        if row.newest_timestamp is not None:
            item.newest_timestamp = max(item.newest_timestamp or 0, row.newest_timestamp)
    return [pairs[key] for key in sorted(pairs)]
