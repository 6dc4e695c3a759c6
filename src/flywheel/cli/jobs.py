"""``flywheel jobs``: submit, list, show, watch, cancel and delete jobs through the API."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.table import Table

from flywheel.cli.api_client import ApiClient, client_of, print_json

app = typer.Typer(help="Submit and follow flywheel jobs.", no_args_is_help=True)
_out = Console()

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
TERMINAL = {"completed", "failed", "cancelled"}


SplitStrategy = Literal["stratified", "time"]


def _split_overrides(**values: Any) -> dict[str, Any] | None:
    """The request's ``data_split_config``: only the options given (the rest keep defaults)."""
    split = {k: v for k, v in values.items() if v is not None}
    return split or None


@app.command("create")
def create_job(
    ctx: typer.Context,
    client_id: Annotated[str, typer.Option("--client-id", help="Application or tenant.")],
    workload_id: Annotated[str, typer.Option("--workload-id", help="Workload to optimise.")],
    job_type: Annotated[str, typer.Option(help="llm_job or embedding_job")] = "llm_job",
    config_name: Annotated[str | None, typer.Option(help="Named config to use.")] = None,
    eval_size: Annotated[int | None, typer.Option(help="Override eval_size.")] = None,
    val_ratio: Annotated[
        float | None,
        typer.Option(help="Override val_ratio (share of the non-eval rest for validation)."),
    ] = None,
    min_total_records: Annotated[
        int | None,
        typer.Option(help="Override min_total_records (fewer clean ones: the job fails)."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="Override limit (most recent records pulled).")
    ] = None,
    random_seed: Annotated[int | None, typer.Option(help="Override the seed.")] = None,
    parse_function_arguments: Annotated[
        bool | None,
        typer.Option(
            "--parse-function-arguments/--no-parse-function-arguments",
            help="Override parse_function_arguments.",
            show_default=False,
        ),
    ] = None,
    split_strategy: Annotated[
        SplitStrategy | None, typer.Option(help="Override split_strategy (stratified or time).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Submit a job for one (client, workload) pair; omitted split options keep the config's."""
    payload: dict[str, Any] = {
        "client_id": client_id,
        "workload_id": workload_id,
        "job_type": job_type,
        "config_name": config_name,
        "data_split_config": _split_overrides(
            eval_size=eval_size,
            val_ratio=val_ratio,
            min_total_records=min_total_records,
            limit=limit,
            random_seed=random_seed,
            parse_function_arguments=parse_function_arguments,
            split_strategy=split_strategy,
        ),
    }
    created = client_of(ctx).request("POST", "/api/jobs", json=payload)
    if as_json:
        print_json(created)
    else:
        _out.print(f"job [bold]{created['id']}[/] is {created['status']}")


@app.command("list")
def list_jobs(
    ctx: typer.Context,
    status: str | None = None,
    client_id: Annotated[str | None, typer.Option("--client-id")] = None,
    workload_id: Annotated[str | None, typer.Option("--workload-id")] = None,
    job_type: str | None = None,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 50,
    cursor: str | None = None,
    as_json: JsonFlag = False,
) -> None:
    """List jobs, newest first (pass --cursor to page on)."""
    params = {
        k: v
        for k, v in {
            "status": status,
            "client_id": client_id,
            "workload_id": workload_id,
            "job_type": job_type,
            "limit": limit,
            "cursor": cursor,
        }.items()
        if v is not None
    }
    page = client_of(ctx).request("GET", "/api/jobs", params=params)
    if as_json:
        print_json(page)
        return
    table = Table("id", "client", "workload", "type", "status", "stage", "progress", "created")
    for j in page["items"]:
        table.add_row(
            j["id"],
            j["client_id"],
            j["workload_id"],
            j["job_type"],
            j["status"],
            j["stage"] or "",
            f"{j['progress']:.0f}%",
            j["created_at"],
        )
    _out.print(table)
    if page["next_cursor"]:
        _out.print(f"more: --cursor {page['next_cursor']}")


def _candidate_progress(candidate: dict[str, Any]) -> float:
    """0-100 for a bar: terminal runs are full; otherwise the mean of reported progress."""
    if candidate["status"] in TERMINAL:
        return 100.0
    parts = [e.get("progress") for e in candidate["evaluations"]]
    if candidate.get("customization"):
        parts.append(candidate["customization"].get("progress"))
    values = [float(p) for p in parts if isinstance(p, int | float)]
    return sum(values) / len(values) if values else 0.0


def _num(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else "-" if value is None else str(value)


def _score(name: str, value: Any) -> str:
    """``name=0.750 [0.600-0.900] n=20`` for a score with a CI; ``name=value`` otherwise."""
    if isinstance(value, float):
        return f"{name}={value:.3f}"
    if isinstance(value, dict) and "value" in value and "ci_low" in value:
        text = f"{name}={_num(value['value'])}"
        if value.get("ci_low") is not None and value.get("ci_high") is not None:
            text += f" [{_num(value['ci_low'])}-{_num(value['ci_high'])}]"
        return text + (f" n={value['n']}" if value.get("n") is not None else "")
    return f"{name}={value}"


def _is_metric(value: Any) -> bool:
    """A score the table shows: a number, or a value with its CI (not a breakdown such as
    ``per_tool`` or ``confusion``, which a table cell cannot hold: they stay in the job's
    JSON, ``flywheel jobs show --json``)."""
    return isinstance(value, int | float) or (isinstance(value, dict) and "value" in value)


def _scores(candidate: dict[str, Any]) -> str:
    out = []
    for evaluation in candidate["evaluations"]:
        scores = evaluation.get("scores") or {}
        shown = ", ".join(_score(k, v) for k, v in scores.items() if _is_metric(v))
        out.append(f"{evaluation.get('eval_type', '?')}: {shown or '-'}")
    return "\n".join(out) or "-"


JUDGE_NOT_CONFIGURED = "judge: not configured (set llm_judge_config for judge scores)"


def judge_note(job: Mapping[str, Any]) -> str | None:
    """Why an LLM job has no judge score, read from its config snapshot (``None``: it has one).

    Without a judge, ``judge_similarity`` / ``judge_tool_call_correctness`` are absent rather
    than 0; saying so keeps a
    missing column from reading as a lost or failed score.
    """
    config = job.get("config")
    if job.get("job_type") == "embedding_job" or not isinstance(config, Mapping):
        return None
    judge = config.get("llm_judge_config") or {}
    return JUDGE_NOT_CONFIGURED if judge.get("type", "none") == "none" else None


def results_table(job: dict[str, Any]) -> Table:
    """One row per candidate: status, scores per evaluation, and errors."""
    table = Table(
        "candidate",
        "status",
        "scores",
        "error",
        title=f"job {job['id']}: {job['status']}",
        caption=judge_note(job),
    )
    for c in job["candidates"]:
        table.add_row(c["name"], c["status"], _scores(c), c["error"] or "")
    return table


def reference_table(reference: dict[str, Any]) -> Table:
    """Embedding jobs: the production retriever's metrics, the yardstick for the candidates."""
    table = Table(
        "metric",
        "value",
        "95% CI",
        "n",
        title=f"reference: {reference['name']}",
        caption=(
            f"not a candidate; {reference['queries']}/{reference['eval_queries']} "
            "eval queries have a production ranking"
        ),
    )
    for metric, score in reference["metrics"].items():
        ci = (
            "-"
            if score.get("ci_low") is None
            else f"{_num(score['ci_low'])}-{_num(score['ci_high'])}"
        )
        table.add_row(metric, _num(score.get("value")), ci, str(score.get("n", "-")))
    return table


def _show(job: dict[str, Any]) -> None:
    _out.print(
        f"[bold]{job['id']}[/] {job['client_id']}/{job['workload_id']} {job['job_type']} "
        f"[bold]{job['status']}[/] stage={job['stage'] or '-'} progress={job['progress']:.0f}%"
    )
    if job["config_name"]:
        _out.print(f"config: {job['config_name']} v{job['config_version']} ({job['config_hash']})")
    if job["error"]:
        _out.print(f"[red]error:[/] {job['error']}")
    for warning in job["warnings"]:
        _out.print(f"[yellow]warning:[/] {warning}")
    if job["recommendation"]:
        _out.print(f"recommendation: {job['recommendation']}")
    _out.print(results_table(job))
    if job.get("reference"):
        _out.print(reference_table(job["reference"]))
    elif job.get("reference_note"):
        _out.print(f"reference: {job['reference_note']}")


@app.command("show")
def show_job(ctx: typer.Context, job_id: str, as_json: JsonFlag = False) -> None:
    """Show a job with its candidates, scores and configuration."""
    job = client_of(ctx).request("GET", f"/api/jobs/{job_id}")
    if as_json:
        print_json(job)
    else:
        _show(job)


def watch_job(
    client: ApiClient, job_id: str, *, interval: float, timeout: float | None = None
) -> dict[str, Any]:
    """Poll a job, drawing a bar for the job and each candidate, until it ends; return it."""
    deadline = None if timeout is None else time.monotonic() + timeout
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[status]}"),
        console=_out,
        transient=False,
    ) as progress:
        bars: dict[str, TaskID] = {}
        while True:
            job = client.request("GET", f"/api/jobs/{job_id}")
            rows = [("job", float(job["progress"]), f"{job['status']} {job['stage'] or ''}")]
            rows += [(c["name"], _candidate_progress(c), c["status"]) for c in job["candidates"]]
            for name, done, status in rows:
                if name not in bars:
                    bars[name] = progress.add_task(name, total=100, status=status)
                progress.update(bars[name], completed=done, status=status)
            if job["status"] in TERMINAL:
                return dict(job)
            if deadline is not None and time.monotonic() > deadline:
                return dict(job)
            time.sleep(interval)


@app.command("watch")
def watch(
    ctx: typer.Context,
    job_id: str,
    interval: Annotated[float, typer.Option(min=0.0, help="Seconds between polls.")] = 2.0,
    timeout: Annotated[float | None, typer.Option(help="Stop watching after this long.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Follow a job with progress bars until it ends, then print its results."""
    job = watch_job(client_of(ctx), job_id, interval=interval, timeout=timeout)
    if as_json:
        print_json(job)
    else:
        _out.print(results_table(job))
    if job["status"] == "failed":
        raise typer.Exit(1)


@app.command("cancel")
def cancel_job(ctx: typer.Context, job_id: str, as_json: JsonFlag = False) -> None:
    """Cancel a job."""
    result = client_of(ctx).request("POST", f"/api/jobs/{job_id}/cancel")
    if as_json:
        print_json(result)
    else:
        _out.print(f"job {job_id} is {result['status']}")


@app.command("delete")
def delete_job(ctx: typer.Context, job_id: str, as_json: JsonFlag = False) -> None:
    """Delete a finished job."""
    result = client_of(ctx).request("DELETE", f"/api/jobs/{job_id}")
    if as_json:
        print_json(result)
    else:
        _out.print(f"job {job_id} deleted")
