"""Dataset pipeline throughput and memory: pull → validate → dedup → split → write.

Synthetic tool-calling logs (~2 KB each, 5–20 tools, ~5 % exact duplicates, ~2 % bad
records) are loaded into a SQLite log store once per size (cached under ``--db-dir``), then
``build_datasets`` runs with ``limit`` = size. Each stage's wall time, records/s and peak
RSS (VmHWM, reset between stages through /proc/self/clear_refs) are printed as a table.
Each run is a fresh process, so peaks do not carry over. A last run pulls ``limit=10k`` from
the largest store: its peak RSS should match the 10k run, because memory follows ``limit``,
not the store's size.

    .venv/bin/python benchmarks/datasets.py --sizes 10k,100k
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
from rich.console import Console
from rich.table import Table

from flywheel.config.schema import CandidateModel, DataSplitConfig, JobConfig
from flywheel.domain.logs import ChatLog
from flywheel.services.datasets import build_datasets
from flywheel.stores.logs_sqlite import SqliteLogStore

CLIENT, WORKLOAD = "bench", "tool-router"
_VOCABULARY = (
    "account order refund shipping invoice weather flight hotel booking payment status "
    "password reset cancel upgrade plan meeting calendar reminder report export address "
    "delivery tracking balance transfer card limit support ticket priority escalate"
)
_WORDS = _VOCABULARY.split()


def _tools(rng: random.Random) -> list[dict[str, object]]:
    names = [f"{rng.choice(_WORDS)}_{rng.choice(_WORDS)}_{i}" for i in range(rng.randint(5, 20))]
    return [
        {
            "type": "function",
            "function": {
                "name": name,
                "description": " ".join(rng.choices(_WORDS, k=2)),
                "parameters": {"type": "object", "properties": {"arg0": {"type": "string"}}},
            },
        }
        for name in names
    ]


def synthetic_logs(n: int, *, seed: int = 7) -> Iterator[ChatLog]:
    """``n`` tool-calling records, newest last; a few duplicates and broken records mixed in."""
    rng = random.Random(seed)
    toolsets = [_tools(rng) for _ in range(4)]  # a few app versions, each with its own tools
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
        tools = toolsets[(i * len(toolsets)) // n]
        tool = rng.choice(tools)["function"]
        assert isinstance(tool, dict)
        arguments = orjson.dumps({"arg0": rng.choice(_WORDS), "arg1": str(i)}).decode()
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
        yield ChatLog.model_construct(
            client_id=CLIENT,
            workload_id=WORKLOAD,
            timestamp=start + i * 1000,
            request=request,
            response=response,
        )


def _store(db_dir: Path, n: int) -> SqliteLogStore:
    store = SqliteLogStore.from_url(f"sqlite:///{db_dir / f'logs-v3-{n}.db'}")
    if store.count(CLIENT, WORKLOAD) != n:
        store.delete(CLIENT, WORKLOAD)
        store.write(synthetic_logs(n))
    return store


def _peak_mb_and_reset() -> float:
    status = Path("/proc/self/status").read_text()
    peak = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
    Path("/proc/self/clear_refs").write_text("5")
    return peak / 1024


Row = tuple[str, str, str, str, str]


def _run(store: SqliteLogStore, limit: int, label: str) -> list[Row]:
    rows: list[Row] = []
    config = JobConfig(
        candidates=[CandidateModel(name="small", context_length=8192)],
        data_split_config=DataSplitConfig(eval_size=100, limit=limit, min_total_records=200),
    )
    _peak_mb_and_reset()
    started = time.perf_counter()
    pulled = sum(1 for _ in store.iter_recent(CLIENT, WORKLOAD, limit=limit))
    pull_s = time.perf_counter() - started
    rows.append(
        (
            label,
            "pull only",
            f"{pull_s:.2f}",
            f"{pulled / pull_s:,.0f}",
            f"{_peak_mb_and_reset():,.0f}",
        )
    )
    out = Path(tempfile.mkdtemp(prefix="flywheel-bench-"))
    marks: list[tuple[str, float, float]] = []
    last = [time.perf_counter()]

    def on_stage(stage: str) -> None:
        now = time.perf_counter()
        marks.append((stage, now - last[0], _peak_mb_and_reset()))
        last[0] = now

    started = time.perf_counter()
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
        shutil.rmtree(out, ignore_errors=True)
    total = time.perf_counter() - started
    names = {"stream": "pull+validate+dedup", "split": "split", "write": "write", "icl": "icl"}
    for stage, seconds, peak in marks:
        rows.append(
            (label, names[stage], f"{seconds:.2f}", f"{pulled / seconds:,.0f}", f"{peak:,.0f}")
        )
    kept = result.manifest["stages"]["kept"]
    peak_all = max(p for _, _, p in marks)
    rows.append(
        (
            label,
            f"end to end (kept {kept:,})",
            f"{total:.2f}",
            f"{pulled / total:,.0f}",
            f"{peak_all:,.0f}",
        )
    )
    return rows


def _avg_bytes(store: SqliteLogStore) -> float:
    sample = list(store.iter_recent(CLIENT, WORKLOAD, limit=200))
    return sum(len(r.model_dump_json()) for r in sample) / max(1, len(sample))


def _size(text: str) -> int:
    text = text.strip().lower()
    scale = {"k": 1000, "m": 1_000_000}.get(text[-1], 1)
    return int(float(text.rstrip("km")) * scale)


def _child(db_dir: Path, n: int, limit: int, label: str) -> list[Row]:
    """Run one measurement in a fresh interpreter so peak RSS starts from zero."""
    code = (
        "import sys, orjson; sys.path.insert(0, sys.argv[1]);"
        "from datasets import _run, _store; from pathlib import Path;"
        "s = _store(Path(sys.argv[2]), int(sys.argv[3]));"
        "print(orjson.dumps(_run(s, int(sys.argv[4]), sys.argv[5])).decode())"
    )
    here = str(Path(__file__).parent)
    done = subprocess.run(
        [sys.executable, "-c", code, here, str(db_dir), str(n), str(limit), label],
        check=True,
        capture_output=True,
        text=True,
    )
    rows: list[Row] = [tuple(r) for r in orjson.loads(done.stdout.strip().splitlines()[-1])]  # type: ignore[misc]
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
    args = parser.parse_args()
    args.db_dir.mkdir(parents=True, exist_ok=True)
    sizes = [_size(s) for s in args.sizes.split(",")]
    table = Table(title="Dataset pipeline (SQLite log store)")
    for column in ("records", "stage", "seconds", "records/s", "peak RSS MB"):
        table.add_column(column, justify="right" if column != "stage" else "left")
    runs = [(n, n, f"{n:,}") for n in sizes]
    largest = max(sizes)
    if largest > 10_000:
        runs.append((largest, 10_000, f"10,000 of {largest:,}"))
    for n, limit, label in runs:
        store = _store(args.db_dir, n)  # build the store here, outside the measured process
        table.caption = f"average record {_avg_bytes(store):,.0f} bytes as stored"
        store.close()
        for row in _child(args.db_dir, n, limit, label):
            table.add_row(*row, end_section=row[1].startswith("end to end"))
    Console().print(table)


if __name__ == "__main__":
    main()
