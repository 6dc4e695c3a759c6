"""``flywheel demo``: one whole flywheel job on embedded defaults, from nothing.

1. a fresh data dir (``--data-dir``, else ``FLYWHEEL_DATA_DIR``, else ``./.flywheel-demo``);
2. the demo job configuration (:mod:`flywheel.demo`'s ``demo_config.yaml``, laid over the
   shipped defaults like ``FLYWHEEL_CONFIG``);
3. the API (auth off, bound to 127.0.0.1 only) in this process and a ``flywheel worker``
   child on the embedded broker, both stopped at the end;
4. a seeded customer-service workload (:mod:`flywheel.demo.workload`) loaded through
   ``POST /api/logs``, the normal ingestion path;
5. a job created through ``POST /api/jobs``, followed live, then a results table (scores
   with 95 % CIs, latency, cost, the recommendation) and where the artifacts are.

Everything goes through the same API, workflow and local platform as a real deployment;
only the service URLs are forced to their embedded defaults.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
import yaml
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from flywheel.cli.jobs import judge_note
from flywheel.errors import ConfigError, FlywheelError

app = typer.Typer(help="Run a whole flywheel job on embedded defaults (no servers).")

DEFAULT_DATA_DIR = Path(".flywheel-demo")
MARKER = ".flywheel-demo"
"""File that marks a directory as the demo's own, so a rerun may wipe it."""

_TERMINAL = {"completed", "failed", "cancelled"}
_SERVICE_ENV_PREFIXES = ("REDIS_URL", "MONGODB_", "ELASTICSEARCH_", "ES_", "NMP_")
_FORCED_ENV = (
    "FLYWHEEL_DATA_DIR",
    "FLYWHEEL_CONFIG",
    "FLYWHEEL_AUTH_ENABLED",
    "FLYWHEEL_PLATFORM",
    "FLYWHEEL_API_KEY",
)
_DEMO_WORKFLOW_ENV = {
    # Local work is watched through files: polling every second is cheap and keeps the
    # live view (and the job) moving.
    "FLYWHEEL_WORKFLOW_POLL_INTERVAL_S": "1",
    "FLYWHEEL_WORKFLOW_CAPACITY_RETRY_S": "1",
    "FLYWHEEL_WORKFLOW_SWEEP_INTERVAL_S": "15",
}


class DemoJobType(StrEnum):
    """The two kinds of job the demo runs."""

    llm_job = "llm_job"
    embedding_job = "embedding_job"


# ---- setup ---------------------------------------------------------------------------------


def prepare_data_dir(path: Path) -> Path:
    """Make ``path`` an empty demo directory; refuse to wipe one the demo did not create."""
    path = path.resolve()
    if path.exists() and any(path.iterdir()):
        if not (path / MARKER).exists():
            raise ConfigError(
                f"{path} is not empty and was not created by `flywheel demo`; the demo needs "
                "a fresh data dir: pass --data-dir or set FLYWHEEL_DATA_DIR to another path"
            )
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / MARKER).write_text("created by `flywheel demo`; deleted by its next run\n")
    return path


def demo_job_config(extra_config: Path | None) -> dict[str, Any]:
    """The demo's partial job configuration, with ``extra_config`` (YAML) merged over it."""
    from flywheel.config.resolve import deep_merge
    from flywheel.demo import demo_config_text

    config: dict[str, Any] = yaml.safe_load(demo_config_text()) or {}
    if extra_config is not None:
        extra = yaml.safe_load(extra_config.read_text("utf-8")) or {}
        if not isinstance(extra, dict):
            raise ConfigError(f"{extra_config}: a job configuration must be a YAML mapping")
        config = deep_merge(config, extra)
    return config


def worker_environment(data_dir: Path, config_path: Path) -> dict[str, str]:
    """The worker's environment: this one, with every service forced to its embedded default."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(_SERVICE_ENV_PREFIXES) and key not in _FORCED_ENV
    }
    for key, value in _DEMO_WORKFLOW_ENV.items():
        env.setdefault(key, value)
    env.update(
        {
            "FLYWHEEL_DATA_DIR": str(data_dir),
            "FLYWHEEL_CONFIG": str(config_path),
            "FLYWHEEL_AUTH_ENABLED": "false",
            "FLYWHEEL_LOG_FORMAT": "console",
            "TOKENIZERS_PARALLELISM": "false",
        }
    )
    env.setdefault("FLYWHEEL_LOG_LEVEL", "WARNING")
    if "FLYWHEEL_TORCH_THREADS" not in env:
        # Base, ICL and training run at once, each in its own process.
        env["FLYWHEEL_TORCH_THREADS"] = str(max(1, (os.cpu_count() or 1) // 3))
    if "FLYWHEEL_TRAINING_THREADS" not in env:
        # Training is the critical path: once the evaluations end it has the machine alone.
        env["FLYWHEEL_TRAINING_THREADS"] = str(os.cpu_count() or 1)
    return env


def generate_logs(job_type: DemoJobType, records: int, seed: int) -> tuple[str, list[bytes]]:
    """The workload id and ``records`` NDJSON lines of the demo traffic."""
    from flywheel.demo import (
        CHAT_WORKLOAD_ID,
        RETRIEVAL_WORKLOAD_ID,
        generate_chat_logs,
        generate_retrieval_logs,
        to_jsonl_lines,
    )

    if job_type is DemoJobType.llm_job:
        return CHAT_WORKLOAD_ID, list(to_jsonl_lines(generate_chat_logs(records, seed=seed)))
    return RETRIEVAL_WORKLOAD_ID, list(to_jsonl_lines(generate_retrieval_logs(records, seed=seed)))


@contextlib.contextmanager
def serve_api(api: Any) -> Iterator[str]:
    """Serve ``api`` on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(api, log_config=None, access_log=False, lifespan="on", log_level="warning")
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="demo-api", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise FlywheelError("the demo API did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


# ---- rendering -----------------------------------------------------------------------------


def _num(value: Any, fmt: str = ".3f") -> str:
    return "—" if value is None else format(value, fmt)


def fmt_score(score: Mapping[str, Any] | None) -> str:
    """``0.812 [0.70, 0.91]`` from a score with a CI; ``—`` when missing."""
    if not score or score.get("value") is None:
        return "—"
    low, high = _num(score.get("ci_low"), ".2f"), _num(score.get("ci_high"), ".2f")
    return f"{score['value']:.3f} [{low}, {high}]"


def _work_status(work: Mapping[str, Any] | None) -> str:
    if not work:
        return "—"
    status = str(work.get("status", "?"))
    progress = work.get("progress")
    if status == "running" and isinstance(progress, int | float):
        return f"running {progress:.0f}%"
    return status


def _training(custom: Mapping[str, Any] | None) -> str:
    if not custom:
        return "—"
    details = custom.get("details") or {}
    text = _work_status(custom)
    if details.get("step") is not None and details.get("total_steps"):
        text += f" step {details['step']}/{details['total_steps']}"
    loss = details.get("loss", details.get("final_loss"))
    if isinstance(loss, int | float):
        text += f" loss {loss:.3f}"
    return text


def progress_view(job: Mapping[str, Any], elapsed_s: float) -> Group:
    """The live view: job status and stage, and each candidate's work."""
    header = Text.assemble(
        ("job ", "bold"),
        (str(job.get("id", "")), "cyan"),
        f"  {job.get('status')}",
        f" / {job.get('stage') or '-'}",
        f"  {float(job.get('progress') or 0):.0f}%",
        f"  {elapsed_s:.0f}s",
    )
    table = Table(show_header=True, header_style="bold", expand=False)
    for column in ("candidate", "status", "base", "icl", "customization", "customized"):
        table.add_column(column)
    for cand in job.get("candidates") or []:
        evals = {e.get("eval_type"): e for e in cand.get("evaluations") or []}
        status = str(cand.get("status"))
        reason = (cand.get("deployment") or {}).get("reason")
        if reason:
            status += f" ({reason})"
        table.add_row(
            str(cand.get("name")),
            status,
            _work_status(evals.get("base")),
            _work_status(evals.get("icl")),
            _training(cand.get("customization")),
            _work_status(evals.get("customized")),
        )
    return Group(header, table)


def progress_line(job: Mapping[str, Any]) -> str:
    """One plain-text line of progress (for logs and non-terminal output)."""
    parts = [
        f"{job.get('status')}/{job.get('stage') or '-'} {float(job.get('progress') or 0):.0f}%"
    ]
    for cand in job.get("candidates") or []:
        evals = {e.get("eval_type"): e for e in cand.get("evaluations") or []}
        work = [f"{k}={_work_status(v)}" for k, v in evals.items()]
        work.append(f"customize={_training(cand.get('customization'))}")
        parts.append(f"{cand.get('name')}: {cand.get('status')} " + " ".join(work))
    return " | ".join(parts)


_LLM_METRICS = ("function_name_accuracy", "function_name_and_args_accuracy")
_EMBEDDING_METRICS = ("recall@5", "ndcg@10")


def results_table(job: Mapping[str, Any]) -> Table:
    """Scores with 95 % CIs, latency and cost for every candidate and variant."""
    embedding = job.get("job_type") == DemoJobType.embedding_job.value
    metrics = _EMBEDDING_METRICS if embedding else _LLM_METRICS
    table = Table(title="Results (95% bootstrap CIs)", header_style="bold", caption=judge_note(job))
    table.add_column("candidate / variant")
    labels = {
        "function_name_accuracy": "tool name acc.",
        "function_name_and_args_accuracy": "name+args acc.",
    }
    for metric in metrics:
        table.add_column(labels.get(metric, metric))
    table.add_column("n", justify="right")
    if not embedding:
        for column in ("p50 / p95 ms", "$ / 1k req", "parity"):
            table.add_column(column, justify="right")
    for cand in job.get("candidates") or []:
        for ev in cand.get("evaluations") or []:
            scores = ev.get("scores") or {}
            name = f"{cand.get('name')} / {ev.get('eval_type')}"
            if ev.get("status") != "completed":
                row = [name, *(str(ev.get("status")) for _ in metrics), "—"]
                if not embedding:
                    row += ["—", "—", "—"]
                table.add_row(*row)
                continue
            first = scores.get(metrics[0]) or {}
            row = [name, *(fmt_score(scores.get(m)) for m in metrics), str(first.get("n", "—"))]
            if not embedding:
                latency = scores.get("latency") or {}
                cost = (scores.get("cost") or {}).get("cost_per_1k_requests")
                gate = scores.get("gate") or {}
                passed = gate.get("passed")
                row += [
                    f"{_num(latency.get('p50_ms'), '.0f')} / {_num(latency.get('p95_ms'), '.0f')}",
                    _num(cost, ".4f"),
                    "—" if passed is None else ("yes" if passed else "no"),
                ]
            table.add_row(*row)
    return table


def recommendation_text(job: Mapping[str, Any]) -> str:
    """The recommendation in one or two sentences."""
    rec = job.get("recommendation")
    if not rec:
        return "no recommendation (nothing could be scored)"
    best = rec.get("best")
    if isinstance(best, Mapping):
        ref = rec.get("reference_cost_per_1k_requests")
        return (
            f"recommended: {best.get('name')} at ${_num(best.get('cost_per_1k_requests'), '.4f')}"
            f" per 1k requests (reference model ${_num(ref, '.4f')})"
        )
    if isinstance(best, str):
        metric = rec.get("metric", "score")
        return f"recommended: {best} (best {metric})"
    rejected = rec.get("rejected") or []
    if rejected:
        closest = min(
            rejected,
            key=lambda r: (len(r.get("failing_tools") or []), len(r.get("reasons") or [])),
        )
        reasons = closest.get("reasons") or []
        why = f"; first gap: {reasons[0]}" if reasons else ""
        return (
            "no candidate reached parity with the reference model; closest: "
            f"{closest.get('name')}{why}"
        )
    return "no candidate reached parity with the reference model"


def artifacts(job: Mapping[str, Any], data_dir: Path) -> list[tuple[str, str]]:
    """Where the job's files are."""
    rows = [("data dir", str(data_dir))]
    roots = [d.get("path") for d in job.get("datasets") or [] if d.get("role") == "root"]
    if roots:
        rows.append(("datasets", str(roots[0])))
    for cand in job.get("candidates") or []:
        custom = cand.get("customization") or {}
        output = (custom.get("details") or {}).get("output_model")
        if output:
            rows.append((f"fine-tuned {cand.get('name')}", str(output)))
    rows.append(("worker log", str(data_dir / "worker.log")))
    return rows


# ---- the command ---------------------------------------------------------------------------


def _api_error(response: Any) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except ValueError:
        return str(response.text)


def _watch(
    client: Any, job_id: str, console: Console, *, timeout_s: float, alive: Any
) -> dict[str, Any]:
    """Poll the job until it ends, showing progress; its final body."""
    start = time.monotonic()
    job: dict[str, Any] = {}

    def fetch() -> dict[str, Any]:
        response = client.get(f"/api/jobs/{job_id}")
        if response.status_code != 200:
            raise FlywheelError(f"GET /api/jobs/{job_id}: {_api_error(response)}")
        body: dict[str, Any] = response.json()
        return body

    def check() -> None:
        if time.monotonic() - start > timeout_s:
            raise FlywheelError(f"the demo job did not finish within {timeout_s:.0f} s")
        if not alive():
            raise FlywheelError("the demo worker stopped unexpectedly; see its log")

    if console.is_terminal:
        with Live(console=console, refresh_per_second=2, transient=False) as live:
            while True:
                job = fetch()
                live.update(progress_view(job, time.monotonic() - start))
                if job.get("status") in _TERMINAL:
                    return job
                check()
                time.sleep(1.0)
    last = ""
    while True:
        job = fetch()
        line = progress_line(job)
        if line != last:
            console.print(f"[{time.monotonic() - start:5.0f}s] {line}", highlight=False)
            last = line
        if job.get("status") in _TERMINAL:
            return job
        check()
        time.sleep(1.0)


@app.callback(invoke_without_command=True)
def demo(
    job_type: Annotated[
        DemoJobType, typer.Option(help="llm_job: tool calling; embedding_job: retrieval.")
    ] = DemoJobType.llm_job,
    results: Annotated[
        Path | None, typer.Option(help="Write the finished job (GET /api/jobs/{id}) here.")
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help="Fresh data dir (default: FLYWHEEL_DATA_DIR, else ./.flywheel-demo); a previous "
            "demo's dir is wiped, any other non-empty dir is refused."
        ),
    ] = None,
    records: Annotated[int, typer.Option(min=1, help="Log records to generate.")] = 600,
    seed: Annotated[int, typer.Option(help="Workload seed.")] = 7,
    timeout_minutes: Annotated[float, typer.Option(min=1, help="Give up after this.")] = 90.0,
    extra_config: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="YAML merged over the demo job configuration (e.g. other candidates).",
        ),
    ] = None,
) -> None:
    """Generate a customer-service workload, run a whole job on it locally, show the results."""
    import httpx

    from flywheel.api.app import create_app
    from flywheel.cli.embedded_worker import EmbeddedWorker
    from flywheel.logging import configure_logging
    from flywheel.settings import Settings
    from flywheel.stores.registry import open_state_store
    from flywheel.workflow.launcher import create_launcher
    from flywheel.workflow.options import WorkflowOptions

    # Not a terminal (a log file, CI): wide enough for the results table on one line each.
    console = Console() if sys.stdout.isatty() else Console(width=160)
    began = time.monotonic()
    chosen = data_dir or Path(os.environ.get("FLYWHEEL_DATA_DIR") or DEFAULT_DATA_DIR)
    root = prepare_data_dir(chosen)
    config_path = root / "demo-config.yaml"
    config_path.write_text(yaml.safe_dump(demo_job_config(extra_config), sort_keys=False))
    configure_logging(fmt="console", level=os.environ.get("FLYWHEEL_LOG_LEVEL", "WARNING"))
    logging.getLogger("kombu.connection").setLevel(logging.ERROR)  # "No hostname was supplied"
    settings = Settings(
        data_dir=root,
        config_path=config_path,
        auth_enabled=False,
        redis_url=None,
        mongodb_url=None,
        elasticsearch_url=None,
        nmp_base_url=None,
        log_format="console",
    )
    worker_env = worker_environment(root, config_path)
    options = WorkflowOptions(queue_prefix=worker_env.get("FLYWHEEL_WORKFLOW_QUEUE_PREFIX", ""))
    console.print(f"[bold]Flywheel demo[/] ({job_type.value}) in {root}")

    workload_id, lines = generate_logs(job_type, records, seed)
    state = open_state_store(settings.state_store_url)
    job: dict[str, Any] = {}
    try:
        api = create_app(
            settings, state_store=state, workflow=create_launcher(settings, state, options)
        )
        worker = EmbeddedWorker(env=worker_env, log_file=root / "worker.log")
        with worker, serve_api(api) as url, httpx.Client(base_url=url, timeout=120) as client:
            console.print(f"API and console on {url} (auth off, loopback only)")
            accepted = rejected = 0
            for i in range(0, len(lines), 500):
                response = client.post(
                    "/api/logs",
                    content=b"".join(lines[i : i + 500]),
                    headers={"Content-Type": "application/x-ndjson"},
                )
                if response.status_code != 200:
                    raise FlywheelError(f"POST /api/logs: {_api_error(response)}")
                accepted += int(response.json()["accepted"])
                rejected += int(response.json()["rejected"])
            console.print(
                f"loaded {accepted} {'chat' if job_type is DemoJobType.llm_job else 'retrieval'}"
                " log records "
                f"({rejected} rejected) for {workload_id}"
            )
            from flywheel.demo import CLIENT_ID

            created = client.post(
                "/api/jobs",
                json={
                    "client_id": CLIENT_ID,
                    "workload_id": workload_id,
                    "job_type": job_type.value,
                },
            )
            if created.status_code not in (200, 201, 202):
                raise FlywheelError(f"POST /api/jobs: {_api_error(created)}")
            job_id = str(created.json()["id"])
            console.print(f"job {job_id} created; following it (Ctrl-C cancels it)")
            try:
                job = _watch(
                    client, job_id, console, timeout_s=timeout_minutes * 60, alive=worker.alive
                )
            except KeyboardInterrupt:
                console.print("cancelling the job…")
                with contextlib.suppress(httpx.HTTPError):
                    client.post(f"/api/jobs/{job_id}/cancel")
                    deadline = time.monotonic() + 20
                    while time.monotonic() < deadline:
                        if client.get(f"/api/jobs/{job_id}").json().get("status") in _TERMINAL:
                            break
                        time.sleep(0.5)
                raise
    finally:
        state.close()

    wall = time.monotonic() - began
    if results is not None:
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_bytes(orjson.dumps(job, option=orjson.OPT_INDENT_2))
    console.print(results_table(job))
    console.print(recommendation_text(job))
    where = Table(show_header=False, box=None)
    where.add_column("what", no_wrap=True)
    where.add_column("path", overflow="fold")
    for label, path in artifacts(job, root):
        where.add_row(label, path)
    if results is not None:
        where.add_row("results", str(results.resolve()))
    console.print(where)
    status = job.get("status")
    console.print(f"job {status} in {wall:.0f} s")
    if status != "completed":
        if job.get("error"):
            console.print(f"[red]error:[/] {job['error']}")
        raise typer.Exit(code=1)
