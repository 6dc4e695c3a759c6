"""Workflow orchestration overhead: job creation → ``completed`` on real Celery workers.

The model platform is the tests' fake with every lifecycle instant, so what is measured is
the workflow itself: broker round-trips, state-store compare-and-set writes, the dataset
build (real, from a SQLite log store of 40 tool-calling records) and finalize's scoring.

1. one ``llm_job`` × 3 candidates (deploy → base ‖ icl ‖ customize → customized → shutdown),
   repeated ``--repeat`` times, sequentially: latency per job;
2. ``--jobs`` such jobs enqueued at once: throughput.

Overhead per job = latency − dataset build time (the only real work). Target: < 2 s.
Uses ``REDIS_URL`` (default ``redis://127.0.0.1:6379/0``, own key prefix, cleaned up) or,
with ``--embedded``, the filesystem broker.

    .venv/bin/python benchmarks/orchestration.py --jobs 50
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' fake platform

from tests.workflow.celery_support import REDIS_URL, Cluster, make_cluster
from tests.workflow.fake_platform import FakePlatform
from tests.workflow.support import chat_logs, create_job, llm_config

from flywheel.domain.jobs import Job, JobStatus
from flywheel.stores.logs_sqlite import SqliteLogStore
from flywheel.stores.state_sqlite import SqliteStateStore

CANDIDATES = ["cand-a", "cand-b", "cand-c"]


def _run_jobs(cluster: Cluster, state: SqliteStateStore, n: int) -> tuple[float, list[Job]]:
    started = time.perf_counter()
    jobs = [create_job(state, llm_config(CANDIDATES, gpus=0)) for _ in range(n)]
    for job in jobs:
        cluster.launcher.enqueue(job.id)
    done = [cluster.wait_done(job.id, timeout_s=600) for job in jobs]
    return time.perf_counter() - started, done


def _latency(job: Job) -> float:
    assert job.finished_at is not None
    return (job.finished_at - job.created_at).total_seconds()


def _build(job: Job) -> float:
    return float(job.state["datasets"].get("build_seconds") or 0.0)


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50, help="jobs enqueued at once")
    parser.add_argument("--repeat", type=int, default=5, help="sequential single-job runs")
    parser.add_argument("--concurrency", type=int, default=4, help="worker processes")
    parser.add_argument("--embedded", action="store_true", help="filesystem broker, no Redis")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="fw-bench-") as tmp:
        data_dir = Path(tmp)
        state = SqliteStateStore.from_url(f"sqlite:///{data_dir / 'state.db'}")
        logs = SqliteLogStore.from_url(f"sqlite:///{data_dir / 'logs.db'}")
        logs.write(chat_logs(40))
        FakePlatform(data_dir / "fake_platform.db")  # instant lifecycles by default
        redis_url = None if args.embedded else REDIS_URL
        gen = make_cluster(
            data_dir,
            state,
            redis_url=redis_url,
            FLYWHEEL_WORKFLOW_POLL_INTERVAL_S="0.02",
            FLYWHEEL_WORKFLOW_STALE_AFTER_S="30",
        )
        cluster = next(gen)
        try:
            cluster.start_worker(concurrency=args.concurrency, beat=False)
            _run_jobs(cluster, state, 1)  # warm-up: worker start, imports
            singles: list[Job] = []
            for _ in range(args.repeat):
                singles.extend(_run_jobs(cluster, state, 1)[1])
            wall, batch = _run_jobs(cluster, state, args.jobs)
        finally:
            gen.close()
        state.close()
        logs.close()

    assert all(j.status is JobStatus.completed for j in [*singles, *batch])
    lat = [_latency(j) for j in singles]
    over = [_latency(j) - _build(j) for j in singles]
    batch_lat = [_latency(j) for j in batch]
    broker = "filesystem" if args.embedded else "Redis"
    table = Table(
        title=f"Workflow orchestration ({broker} broker, {args.concurrency} worker processes, "
        "instant fake platform)"
    )
    for column in ("measure", "value"):
        table.add_column(column)
    table.add_row("1 job × 3 candidates: latency median (s)", f"{statistics.median(lat):.2f}")
    table.add_row(
        "  of which dataset build, median (s)", f"{statistics.median(map(_build, singles)):.2f}"
    )
    table.add_row("  orchestration overhead, median (s)", f"{statistics.median(over):.2f}")
    table.add_row("  orchestration overhead, max (s)", f"{max(over):.2f}")
    table.add_row(f"{args.jobs} jobs at once: wall (s)", f"{wall:.1f}")
    table.add_row("  throughput (jobs/min)", f"{args.jobs / wall * 60:.0f}")
    table.add_row(
        "  job latency p50 / max (s)", f"{statistics.median(batch_lat):.1f} / {max(batch_lat):.1f}"
    )
    table.add_row("  mean worker time per job (s)", f"{wall * args.concurrency / args.jobs:.2f}")
    table.add_row(
        "target: overhead < 2 s per job", "met" if statistics.median(over) < 2 else "NOT met"
    )
    Console().print(table)


if __name__ == "__main__":
    main()
