"""Workflow orchestration overhead: ``POST /api/jobs`` → ``completed``, through the real API.

What a user sees is measured, end to end, on loopback:

- the API: ``flywheel serve --no-worker`` (uvicorn, real HTTP, an admin API key) on a free
  127.0.0.1 port, so every job goes through authentication, configuration resolution (a
  named config), the log count and the enqueue of ``POST /api/jobs``;
- ``--concurrency`` Celery worker processes on ``REDIS_URL`` (default
  ``redis://127.0.0.1:6379/0``, own queue and key prefix, deleted at the end) or, with
  ``--embedded``, on the filesystem broker that ``flywheel serve`` and ``flywheel worker``
  share without Redis;
- the tests' fake model platform with every lifecycle instant, so the only real work is the
  dataset build (from a SQLite log store of 40 tool-calling records) and finalize's scoring;
- each job: one ``llm_job`` × 3 candidates (deploy → base ‖ icl ‖ customize → customized →
  shutdown), each candidate needing ``--gpus`` GPUs (default 1) under a budget of
  ``--gpu-budget`` (default 4) for the workers, so GPU leases are taken and released, and
  concurrent jobs queue on capacity (``--gpus 0`` skips the leases).

1. ``--repeat`` jobs one after another: latency per job, measured two ways: server-side
   (the job's ``finished_at`` minus the moment the POST was sent) and client-observed (until
   ``GET /api/jobs/{id}``, polled every 50 ms, first answers ``completed``).
   Overhead = latency − the dataset build's own seconds; target < 2 s, on the median and p95.
2. ``--jobs`` jobs posted at once: throughput (jobs/min), with the client watching them
   through ``GET /api/jobs`` (the listing, one call per 50 ms round).

Before anything is timed, ``--concurrency`` jobs run at once, warming every pool process.
Platform polls come every 0.02 s and a candidate queued on capacity asks again every
``--capacity-retry-s`` (0.25 s): waiting delays, not work, so they are kept small.

    .venv/bin/python -m benchmarks.orchestration --repeat 10 --jobs 50
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' fake platform

from benchmarks.served_api import prepare_service, served_api
from tests.workflow.celery_support import REDIS_URL, Cluster, make_cluster
from tests.workflow.support import CLIENT, WORKLOAD

from flywheel.domain.jobs import (
    TERMINAL_STATUSES,
    Job,
    JobId,
    JobStatus,
)
from flywheel.stores.state_sqlite import SqliteStateStore

CANDIDATES = ["cand-a", "cand-b", "cand-c"]
CONFIG_NAME = "bench"
POLL_S = 0.05
TIMEOUT_S = 600.0
TARGET_S = 2.0
TERMINAL = {status.value for status in TERMINAL_STATUSES}


@dataclass
class Run:
    """One job as the client saw it, completed with its stored record."""

    job_id: str
    posted_wall: float  # time.time() just before the POST: comparable with finished_at
    posted: float  # perf_counter() just before the POST
    answered: float = math.nan  # perf_counter() when the POST answered 202
    seen: float = math.nan  # perf_counter() when the client first saw a terminal status
    job: Job | None = None

    @property
    def stored(self) -> Job:
        """The job as the state store has it (loaded after it ended)."""
        if self.job is None:
            raise RuntimeError(f"job {self.job_id} was not loaded from the state store")
        return self.job

    @property
    def server_s(self) -> float:
        """POST sent → the workflow wrote ``finished_at``."""
        finished = self.stored.finished_at
        if finished is None:
            raise RuntimeError(f"job {self.job_id} has no finished_at")
        return finished.timestamp() - self.posted_wall

    @property
    def client_s(self) -> float:
        """POST sent → the client's poll first answered the terminal status."""
        return self.seen - self.posted

    @property
    def gpu_waits_s(self) -> list[float]:
        """Per candidate: datasets uploaded → its GPUs granted (queued on capacity meanwhile)."""
        state = self.stored.state
        ready = state["datasets"]["uploaded_at"]
        return [(c["started_at"] - ready) / 1000 for c in state["candidates"].values()]

    @property
    def build_s(self) -> float:
        """The dataset build's own seconds (the only real work of the job)."""
        return float(self.stored.state["datasets"].get("build_seconds") or 0.0)


def _post(http: httpx.Client) -> Run:
    """Submit one job through ``POST /api/jobs`` with the benchmark's named config."""
    posted_wall, posted = time.time(), time.perf_counter()
    response = http.post(
        "/api/jobs",
        json={"client_id": CLIENT, "workload_id": WORKLOAD, "config_name": CONFIG_NAME},
    )
    if response.status_code != 202:
        raise RuntimeError(f"POST /api/jobs answered {response.status_code}: {response.text}")
    run = Run(job_id=response.json()["id"], posted_wall=posted_wall, posted=posted)
    run.answered = time.perf_counter()
    return run


def _deadline_passed(deadline: float, waiting: int, cluster: Cluster) -> None:
    if time.monotonic() > deadline:
        raise RuntimeError(
            f"{waiting} job(s) not ended after {TIMEOUT_S:.0f} s: see "
            f"{cluster.data_dir / 'api.log'}\nworkers:\n{cluster.worker_output()}"
        )


def _watch_one(http: httpx.Client, run: Run, cluster: Cluster) -> None:
    """Poll ``GET /api/jobs/{id}`` every 50 ms until the job ends."""
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        response = http.get(f"/api/jobs/{run.job_id}")
        if response.status_code == 200 and response.json()["status"] in TERMINAL:
            run.seen = time.perf_counter()
            return
        _deadline_passed(deadline, 1, cluster)
        time.sleep(POLL_S)


def _listing(http: httpx.Client) -> Iterator[dict[str, str]]:
    """Every job of the benchmark's client, page by page (``GET /api/jobs``)."""
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"client_id": CLIENT, "limit": 200}
        if cursor:
            params["cursor"] = cursor
        response = http.get("/api/jobs", params=params)
        response.raise_for_status()
        page = response.json()
        yield from page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return


def _watch_many(http: httpx.Client, runs: list[Run], cluster: Cluster) -> None:
    """Poll the listing every 50 ms until every job ends (one call per round, not N)."""
    waiting = {run.job_id: run for run in runs}
    deadline = time.monotonic() + TIMEOUT_S
    while waiting:
        for item in _listing(http):
            if item["status"] in TERMINAL and item["id"] in waiting:
                waiting.pop(item["id"]).seen = time.perf_counter()
        if waiting:
            _deadline_passed(deadline, len(waiting), cluster)
            time.sleep(POLL_S)


def _load(state: SqliteStateStore, runs: list[Run]) -> list[Run]:
    """Attach the stored jobs; stop with the reasons when any did not complete."""
    for run in runs:
        run.job = state.get_job(JobId(run.job_id))
    bad = [run.stored for run in runs if run.stored.status is not JobStatus.completed]
    if bad:
        reasons = "; ".join(f"{j.id}: {j.status.value} ({j.error})" for j in bad)
        raise RuntimeError(f"{len(bad)} job(s) did not complete: {reasons}")
    return runs


def _percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (with 5 values, p95 is the max)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _spread(values: list[float]) -> str:
    """``p50 / p95 / max``."""
    return f"{statistics.median(values):.2f} / {_percentile(values, 0.95):.2f} / {max(values):.2f}"


def _verdict(overheads: list[float]) -> str:
    median, p95 = statistics.median(overheads), _percentile(overheads, 0.95)
    ok = median < TARGET_S and p95 < TARGET_S
    return f"{'PASS' if ok else 'FAIL'} (median {median:.2f} s, p95 {p95:.2f} s)"


def _table(args: argparse.Namespace, singles: list[Run], batch: list[Run]) -> Table:
    """The results, one measure per row."""
    broker = "filesystem" if args.embedded else "Redis"
    gpus = (
        f"{args.gpus} GPU(s) per candidate, GPU budget {args.gpu_budget}"
        if args.gpus
        else "no GPUs (leases skipped)"
    )
    table = Table(
        title=f"Workflow orchestration through POST /api/jobs ({broker} broker, "
        f"{args.concurrency} worker processes, {gpus}, capacity retry "
        f"{args.capacity_retry_s:g} s, instant fake platform)"
    )
    for column in ("measure", "value"):
        table.add_column(column)
    server = [r.server_s for r in singles]
    client = [r.client_s for r in singles]
    builds = [r.build_s for r in singles]
    post_ms = [(r.answered - r.posted) * 1000 for r in singles]
    n = len(singles)
    table.add_row(f"{n} sequential jobs × 3 candidates", "p50 / p95 / max")
    table.add_row("  POST /api/jobs answered 202 (ms)", _spread(post_ms))
    table.add_row("  server-side latency: POST → finished_at (s)", _spread(server))
    table.add_row("  client-observed latency: POST → GET says completed (s)", _spread(client))
    table.add_row("  of which dataset build (s)", _spread(builds))
    over_server = [s - b for s, b in zip(server, builds, strict=True)]
    over_client = [c - b for c, b in zip(client, builds, strict=True)]
    table.add_row("  overhead, server-side (s)", _spread(over_server))
    table.add_row("  overhead, client-observed (s)", _spread(over_client))
    table.add_row(f"target: overhead < {TARGET_S:g} s, server-side", _verdict(over_server))
    table.add_row(f"target: overhead < {TARGET_S:g} s, client-observed", _verdict(over_client))
    first = min(r.posted for r in batch)
    first_wall = min(r.posted_wall for r in batch)
    wall = max(r.stored.finished_at.timestamp() for r in batch if r.stored.finished_at)
    wall -= first_wall
    seen_wall = max(r.seen for r in batch) - first
    table.add_row(f"{args.jobs} jobs posted at once", "")
    table.add_row("  wall: first POST → last finished_at (s)", f"{wall:.1f}")
    table.add_row("  throughput (jobs/min)", f"{args.jobs / wall * 60:.0f}")
    table.add_row("  wall: first POST → client saw all completed (s)", f"{seen_wall:.1f}")
    table.add_row("  server-side latency p50 / p95 / max (s)", _spread([r.server_s for r in batch]))
    waits = [w for r in batch for w in r.gpu_waits_s]
    table.add_row("  datasets uploaded → candidate's GPUs granted (s)", _spread(waits))
    table.add_row("  mean worker time per job (s)", f"{wall * args.concurrency / args.jobs:.2f}")
    return table


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50, help="jobs posted at once")
    parser.add_argument("--repeat", type=int, default=10, help="sequential single-job runs")
    parser.add_argument("--concurrency", type=int, default=4, help="worker processes")
    parser.add_argument("--gpus", type=int, default=1, help="GPUs per candidate (0: no leases)")
    parser.add_argument("--gpu-budget", type=int, default=4, help="FLYWHEEL_GPU_BUDGET")
    parser.add_argument(
        "--capacity-retry-s",
        type=float,
        default=0.25,
        help="FLYWHEEL_WORKFLOW_CAPACITY_RETRY_S: how soon a queued candidate asks again",
    )
    parser.add_argument("--embedded", action="store_true", help="filesystem broker, no Redis")
    args = parser.parse_args()
    if args.repeat < 1 or args.jobs < 1:
        parser.error("--repeat and --jobs must be at least 1")
    if args.gpus > args.gpu_budget:
        parser.error(
            f"--gpus {args.gpus} exceeds --gpu-budget {args.gpu_budget}: no candidate could "
            "ever be scheduled; raise the budget"
        )
    return args


def _measure(
    http: httpx.Client, cluster: Cluster, state: SqliteStateStore, args: argparse.Namespace
) -> tuple[list[Run], list[Run]]:
    """Warm up, then the sequential runs, then the batch."""
    # One job per pool process at once, so that each has imported and connected what a
    # job needs before anything is timed (a cold process would add seconds to one run).
    warm = [_post(http) for _ in range(args.concurrency)]
    _watch_many(http, warm, cluster)
    _load(state, warm)
    singles = []
    for _ in range(args.repeat):
        run = _post(http)
        _watch_one(http, run, cluster)
        singles.append(run)
    batch = [_post(http) for _ in range(args.jobs)]
    _watch_many(http, batch, cluster)
    return _load(state, singles), _load(state, batch)


def main() -> None:
    """Run the benchmark and print the table."""
    args = _parse_args()
    with tempfile.TemporaryDirectory(prefix="fw-bench-") as tmp:
        data_dir = Path(tmp)
        state, headers = prepare_service(
            data_dir, candidates=CANDIDATES, gpus=args.gpus, config_name=CONFIG_NAME
        )
        open_cluster = contextlib.contextmanager(make_cluster)
        try:
            with open_cluster(
                data_dir,
                state,
                redis_url=None if args.embedded else REDIS_URL,
                FLYWHEEL_GPU_BUDGET=str(args.gpu_budget),
                FLYWHEEL_WORKFLOW_POLL_INTERVAL_S="0.02",
                FLYWHEEL_WORKFLOW_CAPACITY_RETRY_S=str(args.capacity_retry_s),
                FLYWHEEL_WORKFLOW_STALE_AFTER_S="30",
                FLYWHEEL_WORKFLOW_CLAIM_LEASE_S="30",
            ) as cluster:
                cluster.start_worker(concurrency=args.concurrency, beat=False)
                with (
                    served_api(cluster) as base,
                    httpx.Client(base_url=base, headers=headers, timeout=30) as http,
                ):
                    singles, batch = _measure(http, cluster, state, args)
        finally:
            state.close()
    Console(width=130).print(_table(args, singles, batch))


if __name__ == "__main__":
    main()
