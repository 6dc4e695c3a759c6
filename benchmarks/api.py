"""API latency and throughput: POST /api/jobs and GET /api/jobs (pages of 50).

Seeds ``--jobs`` jobs (default 100k) straight into a SQLite state store, starts the API with
uvicorn in a subprocess (real HTTP, auth on), drives it with ``--concurrency`` concurrent
clients (default 32) and prints p50/p99 latency and requests/s per scenario.

    .venv/bin/python benchmarks/api.py [--jobs 100000] [--requests 2000] [--workers 1]

The client runs in this process, so on a small machine it competes with the server for CPU;
read the numbers as a lower bound of what the server alone would do.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import httpx

from flywheel.config.resolve import config_hash, load_base_config, resolve_job_config
from flywheel.domain.jobs import Job, JobId, JobStatus, JobType, Role, utcnow
from flywheel.domain.logs import ChatLog
from flywheel.services.auth import create_key
from flywheel.stores.registry import open_log_store, open_state_store

_STATUSES = [JobStatus.completed, JobStatus.failed, JobStatus.cancelled, JobStatus.running]


def seed(data_dir: Path, jobs: int) -> str:
    """Fill the stores; return an admin key."""
    state = open_state_store(f"sqlite:///{(data_dir / 'state.db').resolve()}")
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_server(data_dir: Path, port: int, workers: int) -> subprocess.Popen[bytes]:
    """Run the API under uvicorn and wait until /api/health answers."""
    env = {**os.environ, "FLYWHEEL_DATA_DIR": str(data_dir), "FLYWHEEL_AUTH_ENABLED": "true"}
    env.pop("MONGODB_URL", None)
    env.pop("ELASTICSEARCH_URL", None)
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
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="flywheel-bench-") as tmp:
        data_dir = Path(tmp)
        key = seed(data_dir, args.jobs)
        port = _free_port()
        server = start_server(data_dir, port, args.workers)
        base = f"http://127.0.0.1:{port}"
        try:
            scenarios = [
                ("GET /api/jobs?limit=50", "GET", "/api/jobs?limit=50", None),
                ("POST /api/jobs", "POST", "/api/jobs", {"client_id": "bench", "workload_id": "w"}),
            ]
            rows = []
            for name, method, path, body in scenarios:
                asyncio.run(
                    run_scenario(
                        base,
                        key,
                        method=method,
                        path=path,
                        body=body,
                        requests=100,
                        concurrency=args.concurrency,
                    )
                )  # warm-up
                lat, wall, errors = asyncio.run(
                    run_scenario(
                        base,
                        key,
                        method=method,
                        path=path,
                        body=body,
                        requests=args.requests,
                        concurrency=args.concurrency,
                    )
                )
                rows.append((name, len(lat), _pct(lat, 50), _pct(lat, 99), len(lat) / wall, errors))
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(
        f"\nSQLite, {args.jobs} seeded jobs, {args.concurrency} concurrent clients, "
        f"{args.workers} uvicorn worker(s), {os.cpu_count()} CPUs\n"
    )
    head = ("scenario", "requests", "p50 ms", "p99 ms", "req/s", "errors")
    print(f"| {head[0]:<24} | " + " | ".join(f"{h:>8}" for h in head[1:5]) + f" | {head[5]:>6} |")
    print(f"|{'-' * 26}|{'-' * 10}|{'-' * 10}|{'-' * 10}|{'-' * 10}|{'-' * 8}|")
    for name, n, p50, p99, rps, errors in rows:
        print(f"| {name:<24} | {n:>8} | {p50:>8.1f} | {p99:>8.1f} | {rps:>8.1f} | {errors:>6} |")


if __name__ == "__main__":
    main()
