"""Bounded soak: the API and workers under continuous load while workers are SIGKILLed.

Everything runs on loopback with the tests' instant fake platform, so what is soaked is the
flywheel itself: HTTP API, Celery on Redis, state-store compare-and-set writes, dataset builds
(real, from a SQLite log store of 40 tool-calling records), scoring, and crash recovery.

- the API: ``flywheel serve`` (uvicorn, real HTTP) on a free 127.0.0.1 port, an admin key;
- 2 Celery worker processes (concurrency 2 each; the first also runs the beat that sweeps
  stale jobs) on ``REDIS_URL`` (default ``redis://127.0.0.1:6379/0``) under their own queue
  and key prefix, deleted at the end;
- ``--clients`` (4) threads each create jobs continuously, keeping at most ``--in-flight``
  (3) of their own unfinished, polling them with ``GET /api/jobs/{id}`` and listing with
  ``GET /api/jobs`` in between;
- every ``--kill-every-s`` (180) one worker, in turn, is killed with SIGKILL (its whole
  process group, no shutdown hook runs) and restarted;
- every ``--sample-every-s`` (10) the RSS of the API and of each worker (main process plus
  pool children) is sampled with psutil.

After ``--minutes`` (30) the clients stop and every created job gets ``--grace-s`` (180) to
end. The table reports jobs created/completed/failed/cancelled, **lost** (the API accepted the
job, but it never left ``pending``: its message was lost) and **stuck** (it started but never
reached a terminal state), API p50/p99 latency per call, records processed (dataset records
of the completed jobs), and RSS first/last/max with growth per process. Exit status 1 when
any job is lost or stuck.

    .venv/bin/python -m benchmarks.soak --minutes 5 --kill-every-s 60
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' fake platform

from benchmarks.served_api import free_port, prepare_service, start_api, stop_api
from tests.workflow.celery_support import REDIS_URL, Cluster, make_cluster
from tests.workflow.support import CLIENT, WORKLOAD

from flywheel.domain.jobs import (
    TERMINAL_STATUSES,
    Job,
    JobId,
    JobStatus,
)

CANDIDATES = ["cand-a", "cand-b"]
CONFIG_NAME = "soak"
WORKERS = 2
TERMINAL = {status.value for status in TERMINAL_STATUSES}


@dataclass
class Stats:
    """What the client threads and the killer record (guarded by ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    created: list[str] = field(default_factory=list)
    http_errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    kills: int = 0

    def timed(self, op: str, started: float, response: httpx.Response | None) -> None:
        """Record one call's latency, or an error when it did not answer 2xx."""
        elapsed = time.perf_counter() - started
        with self.lock:
            if response is None or response.status_code >= 300:
                code = "no answer" if response is None else str(response.status_code)
                self.http_errors[f"{op} {code}"] += 1
            else:
                self.latencies[op].append(elapsed)


def _tree_rss_mb(pid: int) -> dict[int, tuple[str, float]]:
    """RSS in MiB of a process and each of its children (a worker's pool and beat), by pid.

    Each member is ``main`` or ``child`` (a prefork pool process, or the embedded beat: a
    fork carries its parent's command line, so only its pid tells them apart), so a growing
    series points at its owner. Empty when the process is gone.
    """
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return {}
    out: dict[int, tuple[str, float]] = {}
    for p in procs:
        try:
            rss = p.memory_info().rss / 2**20
        except psutil.NoSuchProcess:
            continue
        out[p.pid] = ("main" if p.pid == pid else "child", rss)
    return out


def _client(
    base: str, headers: dict[str, str], stats: Stats, stop: threading.Event, args: Any
) -> None:
    """Create jobs continuously, keeping at most ``args.in_flight`` of them unfinished."""
    mine: list[str] = []
    with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
        while not stop.is_set():
            if len(mine) < args.in_flight:
                started = time.perf_counter()
                try:
                    response: httpx.Response | None = http.post(
                        "/api/jobs",
                        json={
                            "client_id": CLIENT,
                            "workload_id": WORKLOAD,
                            "config_name": CONFIG_NAME,
                        },
                    )
                except httpx.HTTPError:
                    response = None
                stats.timed("create", started, response)
                if response is not None and response.status_code == 202:
                    job_id = response.json()["id"]
                    mine.append(job_id)
                    with stats.lock:
                        stats.created.append(job_id)
            for job_id in list(mine):
                started = time.perf_counter()
                try:
                    response = http.get(f"/api/jobs/{job_id}")
                except httpx.HTTPError:
                    response = None
                stats.timed("get", started, response)
                ended = response is not None and response.status_code == 200
                if ended and response is not None and response.json()["status"] in TERMINAL:
                    mine.remove(job_id)
            started = time.perf_counter()
            try:
                response = http.get("/api/jobs", params={"limit": 20})
            except httpx.HTTPError:
                response = None
            stats.timed("list", started, response)
            stop.wait(args.pause_s)


def _killer(
    cluster: Cluster,
    slots: list[subprocess.Popen[bytes]],
    stats: Stats,
    stop: threading.Event,
    every_s: float,
) -> None:
    """SIGKILL one worker in turn every ``every_s`` and start a replacement at once."""
    turn = 0
    while not stop.wait(every_s):
        slot = turn % len(slots)
        cluster.kill(slots[slot])
        slots[slot] = cluster.start_worker(concurrency=2, beat=slot == 0)
        with stats.lock:
            stats.kills += 1
        turn += 1


#: process name -> pid (one incarnation) -> (seconds since that process started, RSS MiB)
Series = dict[str, dict[int, list[tuple[float, float]]]]
CSV_HEADER = "elapsed_s,process,pid,age_s,member_pid,member_role,rss_mib\n"


def _sampler(
    api: subprocess.Popen[bytes],
    slots: list[subprocess.Popen[bytes]],
    series: Series,
    stop: threading.Event,
    every_s: float,
    csv_path: Path | None,
) -> None:
    """Sample the RSS of the API and of each worker slot, per incarnation (pid).

    With ``csv_path`` every member of every process tree is also written, one row per
    sample, so a growth can be plotted and traced to the process that owns it.
    """
    started = time.monotonic()
    csv = csv_path.open("w", encoding="utf-8") if csv_path else None
    if csv:
        csv.write(CSV_HEADER)
    try:
        while True:
            elapsed = time.monotonic() - started
            procs = [("API", api.pid), *((f"worker {i}", p.pid) for i, p in enumerate(slots))]
            for name, pid in procs:
                members = _tree_rss_mb(pid)
                try:
                    age_s = time.time() - psutil.Process(pid).create_time()
                except psutil.NoSuchProcess:
                    continue
                if not members:
                    continue
                series[name].setdefault(pid, []).append(
                    (age_s, sum(rss for _, rss in members.values()))
                )
                if csv:
                    for member, (role, rss) in members.items():
                        csv.write(
                            f"{elapsed:.1f},{name},{pid},{age_s:.1f},{member},{role},{rss:.1f}\n"
                        )
            if csv:
                csv.flush()
            if stop.wait(every_s):
                return
    finally:
        if csv:
            csv.close()


def _rss_row(
    name: str, incarnations: dict[int, list[tuple[float, float]]], warmup_s: float
) -> tuple[str, str]:
    """RSS after warm-up of the longest-lived incarnation: first / last / max, and the trend.

    A killed worker's replacement starts from scratch, and a fresh process grows while it
    imports and forks its pool, so growth is only meaningful within one process lifetime,
    after ``warmup_s``: the longest such window is reported. Workers also replace their pool
    processes (``FLYWHEEL_WORKFLOW_MAX_TASKS_PER_CHILD``), which dips the total for a sample
    or two, so the trend compares high-water marks: the highest sample of the window's first
    third against that of its last third.
    """
    warm = [[rss for age, rss in samples if age >= warmup_s] for samples in incarnations.values()]
    values = max(warm, key=len)
    label = f"RSS {name} (MiB) after {warmup_s:.0f} s: first / last / max; high-water trend"
    if len(incarnations) > 1:
        label += f" (longest-lived of {len(incarnations)} processes)"
    if len(values) < 3:
        return label, "too few samples (run longer or sample more often)"
    third = len(values) // 3
    early, late = max(values[:third]), max(values[-third:])
    trend = f"{early:.0f} → {late:.0f} ({(late - early) / early * 100:+.1f}%)"
    return label, (
        f"{values[0]:.0f} / {values[-1]:.0f} / {max(values):.0f}; {trend} "
        f"over {len(values)} samples"
    )


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _records(job: Job) -> tuple[int, int]:
    """Log records a completed job's dataset build read from the log store, and kept."""
    stages = (job.dataset_stats or {}).get("stages") or {}
    return int(stages.get("pulled", 0)), int(stages.get("kept", 0))


def main() -> None:
    """Run the soak, print the table, exit 1 on any lost or stuck job."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="load duration")
    parser.add_argument("--kill-every-s", type=float, default=180.0, help="SIGKILL period")
    parser.add_argument("--clients", type=int, default=4, help="client threads")
    parser.add_argument("--in-flight", type=int, default=3, help="unfinished jobs per client")
    parser.add_argument("--pause-s", type=float, default=0.5, help="client pause per round")
    parser.add_argument("--sample-every-s", type=float, default=10.0, help="RSS sampling period")
    parser.add_argument("--warmup-s", type=float, default=30.0, help="RSS ignored before")
    parser.add_argument("--grace-s", type=float, default=180.0, help="time for jobs to end")
    parser.add_argument(
        "--rss-csv", type=Path, default=None, help="write every RSS sample, per process, here"
    )
    parser.add_argument(
        "--max-tasks-per-child",
        type=int,
        default=None,
        help="FLYWHEEL_WORKFLOW_MAX_TASKS_PER_CHILD of the workers (default: the product's, "
        "1000; 0 keeps every pool process for the whole run)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="fw-soak-") as tmp:
        data_dir = Path(tmp)
        state, headers = prepare_service(
            data_dir, candidates=CANDIDATES, gpus=0, config_name=CONFIG_NAME
        )
        recycling = (
            {"FLYWHEEL_WORKFLOW_MAX_TASKS_PER_CHILD": args.max_tasks_per_child}
            if args.max_tasks_per_child is not None
            else {}
        )
        gen = make_cluster(
            data_dir,
            state,
            redis_url=REDIS_URL,
            **recycling,
            FLYWHEEL_LOG_LEVEL="WARNING",
            FLYWHEEL_WORKFLOW_POLL_INTERVAL_S="0.05",
            FLYWHEEL_WORKFLOW_STALE_AFTER_S="5",
            FLYWHEEL_WORKFLOW_CLAIM_LEASE_S="5",
        )
        cluster = next(gen)
        api: subprocess.Popen[bytes] | None = None
        stats = Stats()
        series: Series = defaultdict(dict)
        try:
            slots = [cluster.start_worker(concurrency=2, beat=i == 0) for i in range(WORKERS)]
            port = free_port()
            api = start_api(cluster, port)
            base = f"http://127.0.0.1:{port}"
            stop_load, stop_all = threading.Event(), threading.Event()
            threads = [
                threading.Thread(target=_client, args=(base, headers, stats, stop_load, args))
                for _ in range(args.clients)
            ]
            threads.append(
                threading.Thread(
                    target=_killer, args=(cluster, slots, stats, stop_load, args.kill_every_s)
                )
            )
            sampler = threading.Thread(
                target=_sampler,
                args=(api, slots, series, stop_all, args.sample_every_s, args.rss_csv),
            )
            started = time.monotonic()
            for thread in [*threads, sampler]:
                thread.start()
            stop_load.wait(args.minutes * 60)
            stop_load.set()
            for thread in threads:
                thread.join()
            load_s = time.monotonic() - started
            deadline = time.monotonic() + args.grace_s
            while time.monotonic() < deadline:
                jobs = [state.get_job(JobId(j)) for j in stats.created]
                if all(j.status in TERMINAL_STATUSES for j in jobs):
                    break
                time.sleep(1)
            stop_all.set()
            sampler.join()
            jobs = [state.get_job(JobId(j)) for j in stats.created]
        finally:
            if api is not None:
                stop_api(api)
            gen.close()
            state.close()

    by_status = {s: sum(1 for j in jobs if j.status is s) for s in JobStatus}
    lost = by_status[JobStatus.pending]
    stuck = sum(1 for j in jobs if j.status not in TERMINAL_STATUSES) - lost
    completed = [j for j in jobs if j.status is JobStatus.completed]

    table = Table(
        title=f"Soak: {load_s / 60:.1f} min of load, {args.clients} clients, {WORKERS} workers "
        f"(Redis), one SIGKILLed every {args.kill_every_s:.0f} s, instant fake platform"
    )
    for column in ("measure", "value"):
        table.add_column(column)
    table.add_row("jobs created", str(len(jobs)))
    failed, cancelled = by_status[JobStatus.failed], by_status[JobStatus.cancelled]
    table.add_row("  completed / failed / cancelled", f"{len(completed)} / {failed} / {cancelled}")
    table.add_row("  lost (accepted, never started)", str(lost))
    table.add_row("  stuck (started, never ended)", str(stuck))
    table.add_row("  throughput (completed jobs/min)", f"{len(completed) / load_s * 60:.1f}")
    table.add_row("workers SIGKILLed and restarted", str(stats.kills))
    counts = [_records(job) for job in completed]
    read, kept = sum(c[0] for c in counts), sum(c[1] for c in counts)
    table.add_row("log records processed: read / kept in datasets", f"{read} / {kept}")
    for op in ("create", "get", "list"):
        values = [v * 1000 for v in stats.latencies[op]]
        table.add_row(
            f"API {op}: calls, p50 / p99 (ms)",
            f"{len(values)}, {_percentile(values, 0.5):.0f} / {_percentile(values, 0.99):.0f}",
        )
    errors = ", ".join(f"{k}: {v}" for k, v in sorted(stats.http_errors.items())) or "none"
    table.add_row("API calls not answered 2xx", errors)
    for name in sorted(series):
        table.add_row(*_rss_row(name, series[name], args.warmup_s))
    Console(width=130).print(table)
    if lost or stuck:
        Console().print(f"[red]{lost} lost and {stuck} stuck jobs[/red]")
        sys.exit(1)


if __name__ == "__main__":
    main()
