"""Dataset pipeline throughput and memory: pull → validate → dedup → split → write.

Synthetic tool-calling logs (~2 KB each: 5–20 tools per app version, 2–4 offered per
request; ~5 % exact duplicates, ~2 % bad records) are loaded into a SQLite log store once
per size (cached under ``--db-dir``), then ``build_datasets`` runs with ``limit`` = size.
Each stage's wall time, CPU time, records/s (wall) and peak RSS (VmHWM, reset between
stages through /proc/self/clear_refs) are printed as a table; on a shared machine, CPU
seconds well below wall seconds mean the process waited for a core. Each run is a fresh
process, so peaks do not carry over. A last run pulls ``limit=10k`` from the largest store:
its peak RSS should match the 10k run, because memory follows ``limit``, not the store's size.

``--es 20k`` (the default) then loads that many records into a throwaway noida-db
Elasticsearch server and times, in one process, a bare client PIT/search_after loop, the
pipeline on that store, and the bare loop again (the first read warms the server).

    .venv/bin/python -m benchmarks.datasets --sizes 10k,100k,1M --repeat 2
"""

from __future__ import annotations

import argparse
import itertools
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
from elasticsearch import Elasticsearch
from elasticsearch.serializer import OrjsonSerializer
from rich.console import Console
from rich.table import Table

from flywheel.config.schema import CandidateModel, DataSplitConfig, JobConfig
from flywheel.domain.logs import ChatLog
from flywheel.services.datasets import build_datasets
from flywheel.stores.base import LogStore
from flywheel.stores.logs_sqlite import SqliteLogStore
from flywheel.stores.registry import open_log_store

CLIENT, WORKLOAD = "bench", "tool-router"
_VOCABULARY = (
    "account order refund shipping invoice weather flight hotel booking payment status "
    "password reset cancel upgrade plan meeting calendar reminder report export address "
    "delivery tracking balance transfer card limit support ticket priority escalate"
)
_WORDS = _VOCABULARY.split()


def _tools(rng: random.Random, app: int) -> list[dict[str, object]]:
    """One app version's tools: 5–20 function schemas of one to three parameters."""
    tools: list[dict[str, object]] = []
    for i in range(rng.randint(5, 20)):
        params = {
            f"{rng.choice(_WORDS)}_{k}": {
                "type": rng.choice(("string", "integer", "boolean")),
                "description": " ".join(rng.choices(_WORDS, k=3)),
            }
            for k in range(rng.randint(1, 3))
        }
        tools.append(
            {
                "type": "function",
                "function": {
                    "name": f"{rng.choice(_WORDS)}_{rng.choice(_WORDS)}_{app}_{i}",
                    "description": " ".join(rng.choices(_WORDS, k=rng.randint(4, 8))),
                    "parameters": {
                        "type": "object",
                        "properties": params,
                        "required": [next(iter(params))],
                    },
                },
            }
        )
    return tools


def _screens(rng: random.Random, tools: list[dict[str, object]]) -> list[list[dict[str, object]]]:
    """The tool subsets an app offers, one per screen or agent (2–4 tools each)."""
    return [
        rng.sample(tools, k=min(len(tools), rng.randint(2, 4))) for _ in range(rng.randint(3, 8))
    ]


def _record(
    i: int, rng: random.Random, *, prompt: str, system: str, tools: list[dict[str, object]]
) -> tuple[dict[str, object], dict[str, object]]:
    tool = rng.choice(tools)["function"]
    assert isinstance(tool, dict)
    arguments = orjson.dumps(
        {name: rng.choice(_WORDS) for name in tool["parameters"]["properties"]} | {"ref": str(i)}
    ).decode()
    if rng.random() < 0.02:
        arguments = arguments[:-1]  # invalid JSON
    request = {
        "model": "prod-70b",
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": prompt},
        ],
        "tools": tools,
        "temperature": 0.2,
    }
    response = {
        "id": f"chatcmpl-{i}",
        "object": "chat.completion",
        "created": 1_700_000_000 + i,
        "model": "prod-70b",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": f"call_{i}",
                            "type": "function",
                            "function": {"name": tool["name"], "arguments": arguments},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 600, "completion_tokens": 30, "total_tokens": 630},
    }
    return request, response


def synthetic_rows(
    n: int, *, seed: int = 7
) -> Iterator[tuple[int, dict[str, object], dict[str, object]]]:
    """``n`` tool-calling ``(timestamp, request, response)``, newest last.

    A workload has a few app versions, each with its own 5–20 tools; a request offers the
    subset of one screen (2–4 tools), as real apps do, so a record averages ~2 KB stored.
    About 5 % repeat an earlier prompt exactly and 2 % carry unparsable tool arguments.
    """
    rng = random.Random(seed)
    apps = [_screens(rng, _tools(rng, app)) for app in range(4)]
    system = "You are the routing assistant of ACME. " + " ".join(rng.choices(_WORDS, k=20))
    start = 1_700_000_000_000
    prompts: list[str] = []
    for i in range(n):
        if prompts and rng.random() < 0.05:
            prompt = rng.choice(prompts)
        else:
            prompt = f"request {i}: " + " ".join(rng.choices(_WORDS, k=rng.randint(15, 60)))
            if len(prompts) < 1000:
                prompts.append(prompt)
        tools = rng.choice(apps[(i * len(apps)) // n])
        request, response = _record(i, rng, prompt=prompt, system=system, tools=tools)
        yield start + i * 1000, request, response


def synthetic_logs(n: int, *, seed: int = 7) -> Iterator[ChatLog]:
    """:func:`synthetic_rows` as log records."""
    for timestamp, request, response in synthetic_rows(n, seed=seed):
        yield ChatLog.model_construct(
            client_id=CLIENT,
            workload_id=WORKLOAD,
            timestamp=timestamp,
            request=request,
            response=response,
        )


def _store(db_dir: Path, n: int) -> SqliteLogStore:
    store = SqliteLogStore.from_url(f"sqlite:///{db_dir / f'logs-v4-{n}.db'}")
    if store.count(CLIENT, WORKLOAD) != n:
        store.delete(CLIENT, WORKLOAD)
        _load_sqlite(db_dir / f"logs-v4-{n}.db", n)
    return store


def _load_sqlite(path: Path, n: int) -> None:
    """Insert straight into the store's table with executemany (1M records in a few minutes)."""
    conn = sqlite3.connect(path, isolation_level=None)
    insert = (
        "INSERT INTO logs (client_id, workload_id, kind, timestamp, doc) VALUES (?, ?, ?, ?, ?)"
    )
    rows = (
        (
            CLIENT,
            WORKLOAD,
            "chat",
            ts,
            orjson.dumps(
                {
                    "client_id": CLIENT,
                    "workload_id": WORKLOAD,
                    "timestamp": ts,
                    "kind": "chat",
                    "request": request,
                    "response": response,
                }
            ).decode(),
        )
        for ts, request, response in synthetic_rows(n)
    )
    try:
        while chunk := list(itertools.islice(rows, 20_000)):
            conn.execute("BEGIN")
            conn.executemany(insert, chunk)
            conn.execute("COMMIT")
    finally:
        conn.close()


def _peak_mb_and_reset() -> float:
    status = Path("/proc/self/status").read_text()
    peak = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
    Path("/proc/self/clear_refs").write_text("5")
    return peak / 1024


Row = tuple[str, str, str, str, str, str]
COLUMNS = ("records", "stage", "seconds", "CPU s", "records/s", "peak RSS MB")


class _Clock:
    """Wall and CPU seconds since the last lap (CPU shows what a loaded machine hides)."""

    def __init__(self) -> None:
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def lap(self) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        out = (wall - self._wall, cpu - self._cpu)
        self._wall, self._cpu = wall, cpu
        return out


def _row(label: str, stage: str, records: int, lap: tuple[float, float], peak: float) -> Row:
    wall, cpu = lap
    return (label, stage, f"{wall:.2f}", f"{cpu:.2f}", f"{records / wall:,.0f}", f"{peak:,.0f}")


def _run(store: LogStore, limit: int, label: str) -> list[Row]:
    config = JobConfig(
        candidates=[CandidateModel(name="small", context_length=8192)],
        data_split_config=DataSplitConfig(eval_size=100, limit=limit, min_total_records=200),
    )
    _peak_mb_and_reset()
    clock = _Clock()
    pulled = sum(1 for _ in store.iter_recent(CLIENT, WORKLOAD, limit=limit))
    rows: list[Row] = [_row(label, "pull only", pulled, clock.lap(), _peak_mb_and_reset())]
    out = Path(tempfile.mkdtemp(prefix="flywheel-bench-"))
    marks: list[tuple[str, tuple[float, float], float]] = []
    stages = _Clock()

    def on_stage(stage: str) -> None:
        marks.append((stage, stages.lap(), _peak_mb_and_reset()))

    total = _Clock()
    try:
        result = build_datasets(
            log_store=store,
            client_id=CLIENT,
            workload_id=WORKLOAD,
            config=config,
            out_dir=out,
            on_stage=on_stage,
        )
    finally:
        end_to_end = total.lap()
        shutil.rmtree(out, ignore_errors=True)
    names = {"stream": "pull+validate+dedup", "split": "split", "write": "write", "icl": "icl"}
    rows += [_row(label, names[stage], pulled, lap, peak) for stage, lap, peak in marks]
    kept = result.manifest["stages"]["kept"]
    peak_all = max(p for _, _, p in marks)
    rows.append(_row(label, f"end to end (kept {kept:,})", pulled, end_to_end, peak_all))
    return rows


def _avg_bytes(store: SqliteLogStore) -> float:
    sample = list(store.iter_recent(CLIENT, WORKLOAD, limit=200))
    return sum(len(r.model_dump_json()) for r in sample) / max(1, len(sample))


def _size(text: str) -> int:
    text = text.strip().lower()
    scale = {"k": 1000, "m": 1_000_000}.get(text[-1], 1)
    return int(float(text.rstrip("km")) * scale)


def _child(call: str, *args: object) -> list[Row]:
    """Run one measurement in a fresh interpreter so peak RSS starts from zero."""
    code = (
        "import sys, orjson; sys.path[:0] = sys.argv[1:3];"
        f"from datasets import {call.partition('(')[0]}; from pathlib import Path;"
        f"print(orjson.dumps({call}).decode())"
    )
    here, root = Path(__file__).parent, Path(__file__).parent.parent
    done = subprocess.run(
        [sys.executable, "-c", code, str(here), str(root), *map(str, args)],
        check=True,
        capture_output=True,
        text=True,
    )
    rows: list[Row] = [tuple(r) for r in orjson.loads(done.stdout.strip().splitlines()[-1])]
    return rows


def _sqlite_child(db_dir: str, n: str, limit: str, label: str) -> list[Row]:
    return _run(_store(Path(db_dir), int(n)), int(limit), label)


def _bare_es_read(url: str, index: str, limit: int) -> int:
    """What the Elasticsearch client alone reads per second: PIT + search_after, no records."""
    es = Elasticsearch(url, request_timeout=120, serializer=OrjsonSerializer())
    pit = es.open_point_in_time(index=index, keep_alive="5m")["id"]
    query = {
        "bool": {"filter": [{"term": {"client_id": CLIENT}}, {"term": {"workload_id": WORKLOAD}}]}
    }
    sort = [{"timestamp": {"order": "desc"}}, {"_shard_doc": {"order": "desc"}}]
    seen, after = 0, None
    try:
        while seen < limit:
            size = min(1000, limit - seen)
            response = es.search(
                pit={"id": pit, "keep_alive": "5m"},
                query=query,
                sort=sort,
                size=size,
                search_after=after,
                track_total_hits=False,
            )
            pit = response.get("pit_id", pit)
            hits = response["hits"]["hits"]
            seen += sum(1 for hit in hits if hit["_source"])
            if len(hits) < size:
                break
            after = hits[-1]["sort"]
    finally:
        es.close_point_in_time(id=pit)
        es.close()
    return seen


def _es_child(n: str) -> list[Row]:
    """Load ``n`` records into a throwaway noida-db Elasticsearch, then time a bare client
    read loop and the pipeline on the same server, in this one run."""
    from tests.support.es_server import start_es_server  # the repo root, on sys.path here

    size = int(n)
    with tempfile.TemporaryDirectory(prefix="flywheel-bench-es-") as tmp:
        url, stop = start_es_server(Path(tmp))
        try:
            store = open_log_store(url, index="flywheel-bench")
            store.write(synthetic_logs(size))
            label = f"{size:,} (Elasticsearch)"
            rows: list[Row] = []
            # Bare loop, pipeline, bare loop again: the server's caches warm on the first read.
            for attempt in ("bare client PIT read (1st)", None, "bare client PIT read (2nd)"):
                if attempt is None:
                    rows += _run(store, size, label)
                    continue
                _peak_mb_and_reset()
                clock = _Clock()
                read = _bare_es_read(url, "flywheel-bench", size)
                rows.append(_row(label, attempt, read, clock.lap(), _peak_mb_and_reset()))
            store.close()
        finally:
            stop()
    return rows


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10k,100k", help="comma-separated, e.g. 10k,100k,1M")
    parser.add_argument(
        "--db-dir", type=Path, default=Path(tempfile.gettempdir()) / "flywheel-bench"
    )
    parser.add_argument(
        "--es",
        default="20k",
        help="records for the Elasticsearch row (noida-db test server; slow), '' to skip",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs of each SQLite size")
    parser.add_argument("--json", type=Path, help="also write every row to this JSON file")
    args = parser.parse_args()
    args.db_dir.mkdir(parents=True, exist_ok=True)
    sizes = [_size(s) for s in args.sizes.split(",")]
    table = Table(title="Dataset pipeline (SQLite log store)")
    for column in COLUMNS:
        table.add_column(column, justify="right" if column != "stage" else "left")
    runs = [(n, n, f"{n:,}") for n in sizes]
    largest = max(sizes)
    if largest > 10_000:
        runs.append((largest, 10_000, f"10,000 of {largest:,}"))
    every: list[Row] = []
    for n, limit, label in runs:
        store = _store(args.db_dir, n)  # build the store here, outside the measured process
        table.caption = f"average record {_avg_bytes(store):,.0f} bytes as stored"
        store.close()
        for attempt in range(1, args.repeat + 1):
            name = f"{label} #{attempt}" if args.repeat > 1 else label
            for row in _child("_sqlite_child(*sys.argv[3:])", args.db_dir, n, limit, name):
                table.add_row(*row, end_section=row[1].startswith("end to end"))
                every.append(row)
    Console().print(table)
    if args.es:
        es_table = Table(title="Dataset pipeline (Elasticsearch log store, noida-db test server)")
        for column in COLUMNS:
            es_table.add_column(column, justify="right" if column != "stage" else "left")
        for row in _child("_es_child(*sys.argv[3:])", _size(args.es)):
            es_table.add_row(*row, end_section=row[1].startswith(("bare", "end to end")))
            every.append(row)
        Console().print(es_table)
    if args.json:
        args.json.write_bytes(orjson.dumps(every))


if __name__ == "__main__":
    main()
