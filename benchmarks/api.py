"""API latency and throughput: POST /api/jobs and GET /api/jobs (pages of 50).

Seeds ``--jobs`` jobs through the state store (SQLite: default 100k; MongoDB: default 2k),
starts the API with uvicorn in a subprocess (real HTTP, auth on), drives it with each
``--concurrency`` in turn (default 32 concurrent clients) and prints p50/p99 latency and
requests/s per scenario.

    .venv/bin/python -m benchmarks.api [--jobs 100000] [--requests 2000] [--workers 1]
    .venv/bin/python -m benchmarks.api --concurrency 32 8
    .venv/bin/python -m benchmarks.api --backend mongodb [--jobs 2000]

``--backend mongodb`` uses ``MONGODB_URL`` when set (a fresh database, dropped afterwards),
else starts the mongoeco wire-protocol test server (``tests/support/mongo_server.py``; it
needs the ``.venv-mongo`` venv or ``FLYWHEEL_MONGO_PYTHON``). mongoeco is an in-memory Python
server, slow on big collections, so its figures say little about a real MongoDB.

The client runs in this process, so on a small machine it competes with the server for CPU;
read the numbers as a lower bound of what the server alone would do.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
from benchmarks.served_api import free_port
from pymongo import MongoClient

from flywheel.config.resolve import config_hash, load_base_config, resolve_job_config
from flywheel.domain.jobs import Job, JobId, JobStatus, JobType, Role, utcnow
from flywheel.domain.logs import ChatLog
from flywheel.services.auth import create_key
from flywheel.stores.registry import open_log_store, open_state_store

_STATUSES = [JobStatus.completed, JobStatus.failed, JobStatus.cancelled, JobStatus.running]
_ROOT = Path(__file__).resolve().parents[1]
_DEFAULT_JOBS = {"sqlite": 100_000, "mongodb": 2_000}


@contextmanager
def mongodb_database(tmp: Path) -> Iterator[str]:
    """A fresh database on MONGODB_URL, or on a mongoeco server started for the run."""
    stop: Callable[[], None] | None = None
    if not (server_url := os.environ.get("MONGODB_URL", "")):
        sys.path.insert(0, str(_ROOT))  # the test-server helper lives in tests/support
        from tests.support.mongo_server import start_mongo_wire_server

        server_url, stop = start_mongo_wire_server(tmp / "mongo")
    name = f"flywheel_bench_{uuid.uuid4().hex[:8]}"
    url = urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))
    try:
        yield url
    finally:
        if stop is not None:
            stop()
        else:
            client: MongoClient[dict[str, object]] = MongoClient(url)
            client.drop_database(name)
            client.close()


def seed(data_dir: Path, state_url: str, jobs: int) -> str:
    """Fill the stores; return an admin key."""
    state = open_state_store(state_url)
    logs = open_log_store(f"sqlite:///{(data_dir / 'logs.db').resolve()}")
    config = resolve_job_config(load_base_config(), job_type=JobType.llm_job)
    snapshot, digest = config.model_dump(mode="json"), config_hash(config)
    start = utcnow() - timedelta(days=30)
    began = time.perf_counter()
    for i in range(jobs):
        state.create_job(
            Job(
                id=JobId(f"job_seed_{i:07d}"),
                client_id=f"client-{i % 20}",
                workload_id=f"workload-{i % 50}",
                status=_STATUSES[i % len(_STATUSES)],
                config=snapshot,
                config_hash=digest,
                created_at=start + timedelta(seconds=i),
            )
        )
    print(f"seeded {jobs} jobs in {time.perf_counter() - began:.1f} s", file=sys.stderr)
    now = int(time.time() * 1000)
    logs.write(
        ChatLog(
            client_id="bench",
            workload_id="w",
            timestamp=now - n,
            request={"model": "big", "messages": [{"role": "user", "content": f"q{n}"}]},
            response={"choices": [{"message": {"role": "assistant", "content": "a"}}]},
        )
        for n in range(100)
    )
    key = create_key(state, role=Role.admin, name="bench")[0]
    state.close()
    logs.close()
    return key


def start_server(
    data_dir: Path, port: int, workers: int, mongodb_url: str | None
) -> subprocess.Popen[bytes]:
    """Run the API under uvicorn and wait until /api/health answers."""
    env = {**os.environ, "FLYWHEEL_DATA_DIR": str(data_dir), "FLYWHEEL_AUTH_ENABLED": "true"}
    env.pop("MONGODB_URL", None)
    env.pop("ELASTICSEARCH_URL", None)
    if mongodb_url is not None:
        env["MONGODB_URL"] = mongodb_url
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "flywheel.api.app:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.kill()
    raise RuntimeError("the API did not start")


async def run_scenario(
    base: str,
    key: str,
    *,
    method: str,
    path: str,
    body: dict[str, str] | None,
    requests: int,
    concurrency: int,
) -> tuple[list[float], float, int]:
    """Send ``requests`` requests from ``concurrency`` clients; return latencies, wall, errors."""
    latencies: list[float] = []
    errors = 0
    remaining = requests
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=60) as c:

        async def client() -> None:
            nonlocal remaining, errors
            while remaining > 0:
                remaining -= 1
                began = time.perf_counter()
                response = await c.request(method, path, json=body)
                latencies.append(time.perf_counter() - began)
                errors += response.status_code >= 400

        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        wall = time.perf_counter() - began
    return latencies, wall, errors


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] * 1000


def main() -> None:
    """Seed, serve, load, report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=sorted(_DEFAULT_JOBS), default="sqlite")
    parser.add_argument("--jobs", type=int, help="jobs to seed (sqlite: 100000, mongodb: 2000)")
    parser.add_argument("--requests", type=int, default=2000, help="per scenario and run")
    parser.add_argument("--warmup", type=int, default=100, help="unmeasured requests first")
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[32], help="one run per value, in order"
    )
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    args = parser.parse_args()
    # Stopped with SIGTERM, still stop the server (and mongoeco) and remove the temp dir.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    jobs = _DEFAULT_JOBS[args.backend] if args.jobs is None else args.jobs
    rows = []
    with tempfile.TemporaryDirectory(prefix="flywheel-bench-") as tmp:
        data_dir = Path(tmp)
        with (
            mongodb_database(data_dir)
            if args.backend == "mongodb"
            else _nothing(f"sqlite:///{(data_dir / 'state.db').resolve()}")
        ) as state_url:
            key = seed(data_dir, state_url, jobs)
            port = free_port()
            mongodb_url = state_url if args.backend == "mongodb" else None
            server = start_server(data_dir, port, args.workers, mongodb_url)
            base = f"http://127.0.0.1:{port}"
            try:
                scenarios = [
                    ("GET /api/jobs?limit=50", "GET", "/api/jobs?limit=50", None),
                    (
                        "POST /api/jobs",
                        "POST",
                        "/api/jobs",
                        {"client_id": "bench", "workload_id": "w"},
                    ),
                ]
                for concurrency in args.concurrency:
                    for name, method, path, body in scenarios:
                        asyncio.run(
                            run_scenario(
                                base,
                                key,
                                method=method,
                                path=path,
                                body=body,
                                requests=args.warmup,
                                concurrency=concurrency,
                            )
                        )
                        lat, wall, errors = asyncio.run(
                            run_scenario(
                                base,
                                key,
                                method=method,
                                path=path,
                                body=body,
                                requests=args.requests,
                                concurrency=concurrency,
                            )
                        )
                        p50, p99, rps = _pct(lat, 50), _pct(lat, 99), len(lat) / wall
                        rows.append((name, concurrency, len(lat), p50, p99, rps, errors))
            finally:
                server.terminate()
                server.wait(timeout=30)
    print(
        f"\n{args.backend}, {jobs} seeded jobs, {args.workers} uvicorn worker(s), "
        f"{os.cpu_count()} CPUs\n"
    )
    head = ("scenario", "clients", "requests", "p50 ms", "p99 ms", "req/s", "errors")
    print(f"| {head[0]:<24} | " + " | ".join(f"{h:>8}" for h in head[1:6]) + f" | {head[6]:>6} |")
    print(f"|{'-' * 26}|" + f"{'-' * 10}|" * 5 + f"{'-' * 8}|")
    for name, clients, n, p50, p99, rps, errors in rows:
        print(
            f"| {name:<24} | {clients:>8} | {n:>8} | {p50:>8.1f} | {p99:>8.1f} | {rps:>8.1f}"
            f" | {errors:>6} |"
        )


@contextmanager
def _nothing(value: str) -> Iterator[str]:
    yield value


if __name__ == "__main__":
    main()
