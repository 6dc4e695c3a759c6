"""Builders of retrieval logs for the retrieval dataset tests."""

from __future__ import annotations

import random
from collections.abc import Iterator

from flywheel.domain.logs import ChatLog, LogKind, RetrievalLog, RetrievedPassage

_WORDS = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
    "quebec",
    "romeo",
    "sierra",
    "tango",
    "uniform",
    "victor",
    "whiskey",
    "xray",
    "yankee",
    "zulu",
]


def passage_text(doc_id: str) -> str:
    """A text lexically distinct from every other doc id's text."""
    rng = random.Random(doc_id)
    return f"{doc_id} " + " ".join(rng.sample(_WORDS, 8))


def passage(
    doc_id: str,
    *,
    rank: int | None = None,
    score: float | None = None,
    text: str | None = None,
    source: str | None = None,
) -> RetrievedPassage:
    """One retrieved passage (text derived from the id unless given)."""
    return RetrievedPassage(
        doc_id=doc_id,
        text=passage_text(doc_id) if text is None else text,
        rank=rank,
        score=score,
        source=source,
    )


def make_log(
    query: str,
    doc_ids: list[str],
    *,
    used: list[str] | None = None,
    clicked: list[str] | None = None,
    timestamp: int = 1_700_000_000_000,
    ranked: bool = True,
    source: str | None = None,
    texts: dict[str, str] | None = None,
) -> RetrievalLog:
    """A retrieval log returning ``doc_ids`` in that rank order."""
    texts = texts or {}
    return RetrievalLog(
        client_id="acme",
        workload_id="rag",
        timestamp=timestamp,
        query=query,
        retrieved=[
            passage(
                d,
                rank=i if ranked else None,
                score=round(1.0 - i / 100, 4) if ranked else None,
                text=texts.get(d),
                source=source,
            )
            for i, d in enumerate(doc_ids)
        ],
        used_doc_ids=used if used is not None else [],
        clicked_doc_ids=clicked if clicked is not None else [],
    )


def synthetic_logs(
    n_queries: int,
    *,
    seed: int = 0,
    per_query: int = 8,
    sources: tuple[str, ...] = (),
    duplicates: int = 0,
) -> list[RetrievalLog]:
    """``n_queries`` distinct queries, each using its own doc plus distractors from a pool.

    ``duplicates`` extra logs repeat earlier queries with different case/punctuation and a
    second used passage, older than the original.
    """
    rng = random.Random(seed)
    pool = [f"pool-{i}" for i in range(max(50, n_queries))]
    logs = []
    for i in range(n_queries):
        distractors = rng.sample(pool, per_query - 1)
        docs = [*distractors[:2], f"doc-{i}", *distractors[2:]]
        source = sources[i % len(sources)] if sources else None
        logs.append(
            make_log(
                f"how do I configure widget {i}",
                docs,
                used=[f"doc-{i}"],
                timestamp=1_700_000_000_000 + i * 1000,
                source=source,
            )
        )
    for j in range(duplicates):
        i = j % n_queries
        docs = [f"alt-{i}", *rng.sample(pool, per_query - 1)]
        logs.append(
            make_log(
                f"  How do I CONFIGURE widget {i}?? ",
                docs,
                used=[f"alt-{i}"],
                timestamp=1_600_000_000_000 + j,
            )
        )
    return logs


class FakeLogStore:
    """The read side of ``LogStore`` over a list (newest first, limit and kind honoured)."""

    def __init__(self, records: list[RetrievalLog | ChatLog]) -> None:
        self.records = records
        self.calls: list[dict[str, object]] = []

    def iter_recent(
        self,
        client_id: str,
        workload_id: str,
        *,
        limit: int,
        kind: LogKind | None = None,
        batch_size: int = 1000,
    ) -> Iterator[RetrievalLog | ChatLog]:
        self.calls.append({"client_id": client_id, "limit": limit, "kind": kind})
        matching = [
            r
            for r in self.records
            if (r.client_id, r.workload_id) == (client_id, workload_id)
            and (kind is None or r.kind == kind)
        ]
        matching.sort(key=lambda r: -r.timestamp)
        yield from matching[:limit]
