"""Log-store ingest and read-back throughput, and read-back memory, for both backends.

Run from the repository root:  ``python -m benchmarks.ingest [--n 100000] [--es-n 100000]``

Elasticsearch is ``ELASTICSEARCH_URL`` when set, else a noida-db server this script starts
(it is slow, a few thousand documents per second: lower ``--es-n`` for a quick run). Our ES
adapter is compared with bare ``elasticsearch.helpers.bulk`` and a bare point-in-time/
search_after loop against the same server in the same run, so the ratios show what the
adapter costs. The bare clients serialise with orjson, as the adapter's does, so the ratios
measure the adapter's own work rather than a faster JSON library.

Every measurement runs in a fresh child process, so its peak RSS (``ru_maxrss``) is its own;
"RSS Δ" is that peak minus the RSS just before the measured work started. Reading N/10 and N
records with the same ``batch_size`` shows read-back memory does not grow with N.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from elasticsearch import Elasticsearch, helpers
from elasticsearch.serializer import OrjsonSerializer
from rich.console import Console
from rich.table import Table
from tests.support.es_server import start_es_server

from flywheel.domain.logs import ChatLog
from flywheel.stores.logs_elastic import MAPPING, ElasticLogStore
from flywheel.stores.logs_sqlite import SqliteLogStore

CLIENT, WORKLOAD = "bench", "router"
T0 = 1_700_000_000_000
BATCH = 1000
_POOL = 500


@dataclass(frozen=True)
class Result:
    name: str
    records: int
    seconds: float
    peak_rss_mib: float
    rss_delta_mib: float


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def synthetic_chats(n: int) -> Iterator[ChatLog]:
    """~2 KB chat records, three per millisecond; lazily, so the source costs no memory."""
    pool = [
        ChatLog(
            client_id=CLIENT,
            workload_id=WORKLOAD,
            timestamp=T0,
            request={
                "model": "big-model",
                "messages": [
                    {"role": "system", "content": "You route support tickets. " * 12},
                    {"role": "user", "content": f"ticket {i}: " + "my order has not arrived " * 30},
                ],
                "tools": [
                    {
                        "type": "function",
                        "function": {
                            "name": "route_ticket",
                            "parameters": {
                                "type": "object",
                                "properties": {"queue": {"type": "string"}},
                            },
                        },
                    }
                ],
            },
            response={
                "choices": [
                    {
                        "message": {
                            "role": "assistant",
                            "content": None,
                            "tool_calls": [
                                {
                                    "id": f"call_{i}",
                                    "type": "function",
                                    "function": {
                                        "name": "route_ticket",
                                        "arguments": '{"queue": "shipping"}',
                                    },
                                }
                            ],
                        }
                    }
                ],
                "usage": {"prompt_tokens": 512, "completion_tokens": 12},
            },
        )
        for i in range(_POOL)
    ]
    for i in range(n):
        # model_copy(update=...) neither validates nor deep-copies: the source stays cheap.
        yield pool[i % _POOL].model_copy(update={"timestamp": T0 + i // 3})


# -- measured work, each run in a child process ----------------------------------------


def _sqlite_write(url: str, n: int) -> None:
    store = SqliteLogStore.from_url(url)
    store.write(synthetic_chats(n))
    store.close()


def _sqlite_read(url: str, n: int) -> None:
    store = SqliteLogStore.from_url(url)
    got = sum(1 for _ in store.iter_recent(CLIENT, WORKLOAD, limit=n, batch_size=BATCH))
    store.close()
    assert got == n, got


def _source_only(_: str, n: int) -> None:
    for _record in synthetic_chats(n):
        pass


def _es_write(target: str, n: int) -> None:
    url, index = target.split("|")
    store = ElasticLogStore.from_url(url, index=index)
    store.write(synthetic_chats(n))
    store.close()


def _bare_client(url: str) -> Elasticsearch:
    """A plain client with the adapter's JSON library, so the baselines compare like for like."""
    return Elasticsearch(url, request_timeout=60, serializer=OrjsonSerializer())


def _bare_write(target: str, n: int) -> None:
    url, index = target.split("|")
    es = _bare_client(url)
    es.indices.create(index=index, mappings=MAPPING)
    actions = ({"_index": index, "_source": r.model_dump(mode="json")} for r in synthetic_chats(n))
    helpers.bulk(es, actions, chunk_size=BATCH)
    es.indices.refresh(index=index)
    es.close()


def _es_read(target: str, n: int) -> None:
    url, index = target.split("|")
    store = ElasticLogStore.from_url(url, index=index)
    got = sum(1 for _ in store.iter_recent(CLIENT, WORKLOAD, limit=n, batch_size=BATCH))
    store.close()
    assert got == n, got


def _bare_read(target: str, n: int) -> None:
    url, index = target.split("|")
    es = _bare_client(url)
    pit = es.open_point_in_time(index=index, keep_alive="5m")["id"]
    query = {
        "bool": {"filter": [{"term": {"client_id": CLIENT}}, {"term": {"workload_id": WORKLOAD}}]}
    }
    sort = [{"timestamp": "desc"}, {"_shard_doc": "desc"}]
    got, after = 0, None
    while got < n:
        resp = es.search(
            pit={"id": pit, "keep_alive": "5m"},
            query=query,
            sort=sort,
            size=min(BATCH, n - got),
            search_after=after,
            track_total_hits=False,
        )
        hits = resp["hits"]["hits"]
        if not hits:
            break
        got += len(hits)
        after = hits[-1]["sort"]
    es.close_point_in_time(id=pit)
    es.close()
    assert got == n, got


def _child(job: Callable[[str, int], None], target: str, n: int, out: Any) -> None:
    before = _rss_mib()
    start = time.perf_counter()
    job(target, n)
    seconds = time.perf_counter() - start
    peak = _peak_rss_mib()
    out.put((seconds, peak, peak - before))


def measure(
    name: str, job: Callable[[str, int], None], target: str, n: int, *, repeat: int = 1
) -> Result:
    """Run ``job`` in a fresh process ``repeat`` times; keep the fastest run."""
    ctx = multiprocessing.get_context("spawn")
    runs = []
    for _ in range(repeat):
        out = ctx.Queue()
        proc = ctx.Process(target=_child, args=(job, target, n, out))
        proc.start()
        runs.append(out.get())
        proc.join()
    seconds, peak, delta = min(runs)
    return Result(name, n, seconds, peak, delta)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="records for SQLite")
    parser.add_argument("--es-n", type=int, default=100_000, help="records for Elasticsearch")
    args = parser.parse_args()

    rows: list[tuple[Result, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        sqlite_url = f"sqlite:///{Path(tmp) / 'logs.db'}"
        rows.append((measure("synthetic source only", _source_only, "", args.n), ""))
        rows.append((measure("SQLite write", _sqlite_write, sqlite_url, args.n), ""))
        rows.append((measure("SQLite read (N/10)", _sqlite_read, sqlite_url, args.n // 10), ""))
        rows.append((measure("SQLite read (N)", _sqlite_read, sqlite_url, args.n), ""))

        url = os.environ.get("ELASTICSEARCH_URL")
        stop: Callable[[], None] | None = None
        if not url:
            url, stop = start_es_server(Path(tmp))
        ours, bare = f"flywheel-bench-{uuid.uuid4().hex[:8]}", f"bare-bench-{uuid.uuid4().hex[:8]}"
        try:
            es_write = measure("ES write (adapter)", _es_write, f"{url}|{ours}", args.es_n)
            bare_write = measure(
                "ES write (bare helpers.bulk)", _bare_write, f"{url}|{bare}", args.es_n
            )
            rows += [
                (es_write, f"{bare_write.seconds / es_write.seconds:.2f}x"),
                (bare_write, "1.00x"),
            ]
            small = measure("ES read (adapter, N/10)", _es_read, f"{url}|{ours}", args.es_n // 10)
            # Both loops read the same index, best of two: the server's noise is large.
            es_read = measure(
                "ES read (adapter, N)", _es_read, f"{url}|{ours}", args.es_n, repeat=2
            )
            bare_read = measure(
                "ES read (bare PIT loop, N)", _bare_read, f"{url}|{ours}", args.es_n, repeat=2
            )
            rows += [
                (small, ""),
                (es_read, f"{bare_read.seconds / es_read.seconds:.2f}x"),
                (bare_read, "1.00x"),
            ]
        finally:
            es = Elasticsearch(url, request_timeout=60)
            es.options(ignore_status=404).indices.delete(index=f"{ours},{bare}")
            es.options(ignore_status=404).indices.delete_index_template(
                name=f"flywheel-logs-{ours}"
            )
            es.close()
            if stop is not None:
                stop()

    table = Table(title=f"Log store ingest / read-back (batch {BATCH}, ~2 KB chat records)")
    for column in (
        "measurement",
        "records",
        "seconds",
        "records/s",
        "peak RSS MiB",
        "RSS Δ MiB",
        "speed vs bare",
    ):
        table.add_column(column, justify="left" if column == "measurement" else "right")
    for result, ratio in rows:
        table.add_row(
            result.name,
            f"{result.records:,}",
            f"{result.seconds:.2f}",
            f"{result.records / result.seconds:,.0f}",
            f"{result.peak_rss_mib:.0f}",
            f"{result.rss_delta_mib:.1f}",
            ratio,
        )
    Console(width=150).print(table)
    source = "ELASTICSEARCH_URL" if "ELASTICSEARCH_URL" in os.environ else "noida-db, started here"
    print(f"Elasticsearch: {source}")


if __name__ == "__main__":
    main()
