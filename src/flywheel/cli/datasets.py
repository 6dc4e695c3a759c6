"""``flywheel datasets``: build and inspect a workload's datasets without running a job.

``build`` resolves the configuration exactly as job creation does (shipped defaults ←
``FLYWHEEL_CONFIG`` ← the named config ← the split overrides given here), then runs the same
service the workflow runs, so the files and manifest are the ones a job would produce.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from flywheel.config.resolve import load_base_config, resolve_job_config
from flywheel.config.schema import DataSplitOverrides, JobConfig
from flywheel.domain.jobs import JobType
from flywheel.errors import DatasetError, FlywheelError
from flywheel.services.datasets import DatasetBuildResult
from flywheel.settings import Settings, get_settings
from flywheel.stores.base import LogStore
from flywheel.stores.registry import open_log_store, open_state_store
from flywheel.workflow.datasets import build_llm_datasets

app = typer.Typer(help="Build and inspect datasets from production logs.", no_args_is_help=True)
_console = Console()


@app.callback()
def datasets() -> None:
    """Build and inspect datasets from production logs."""


_errors = Console(stderr=True)


def _named_body(settings: Settings, name: str) -> dict[str, Any]:
    store = open_state_store(settings.state_store_url)
    try:
        return dict(store.get_config(name).body)
    finally:
        store.close()


def _config(
    settings: Settings, config_name: str | None, overrides: DataSplitOverrides
) -> JobConfig:
    named = _named_body(settings, config_name) if config_name else None
    return resolve_job_config(
        load_base_config(settings.config_path),
        job_type=JobType.llm_job,
        named=named,
        overrides=overrides,
    )


def _summary(result: DatasetBuildResult) -> Table:
    manifest = result.manifest
    stages = manifest["stages"]
    table = Table(title=f"Datasets in {result.out_dir} ({result.workload_type})")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_column("detail")
    for stage in ("pulled", "valid", "unique", "within_budget", "kept"):
        table.add_row(stage, f"{stages[stage]:,}", "")
    for reason, count in stages["dropped"].items():
        table.add_row(f"  dropped: {reason}", f"{count:,}", "")
    table.add_section()
    for name, info in manifest["splits"].items():
        labels = ", ".join(f"{label}={n}" for label, n in info["by_label"].items())
        table.add_row(name, f"{info['records']:,}", labels)
    table.add_section()
    for name, info in manifest["files"].items():
        table.add_row(
            name, f"{info['records']:,}", f"{info['bytes']:,} B  sha256 {info['sha256'][:12]}"
        )
    for icl_set in manifest["icl"]["sets"]:
        table.add_row(
            f"  {icl_set['file']}",
            f"{icl_set['budget_tokens']:,} tok",
            f"{', '.join(icl_set['candidates'])}; below min: "
            f"{len(icl_set['items_below_min_examples'])}",
        )
    for name, info in manifest["token_counters"].items():
        table.add_row(f"  tokens: {name}", info["counter"], info["detail"])
    leaks = manifest["contamination"]["items"]
    table.add_section()
    table.add_row("contaminated eval items", str(len(leaks)), manifest["contamination"]["checked"])
    table.add_row("seed", str(manifest["seed"]), manifest["seed_source"])
    return table


def _build(
    *,
    settings: Settings,
    log_store: LogStore,
    client_id: str,
    workload_id: str,
    config: JobConfig,
    out: Path,
) -> DatasetBuildResult:
    return build_llm_datasets(
        log_store,
        client_id=client_id,
        workload_id=workload_id,
        config=config,
        out_dir=out,
        torch_threads=settings.torch_threads,
    )


@app.command("build")
def build(
    client_id: Annotated[str, typer.Option("--client-id", help="Application or tenant.")],
    workload_id: Annotated[str, typer.Option("--workload-id", help="Workload to build from.")],
    out: Annotated[Path, typer.Option("--out", help="Directory for the files and manifest.")],
    config_name: Annotated[
        str | None, typer.Option("--config-name", help="Named config from the state store.")
    ] = None,
    eval_size: Annotated[int | None, typer.Option("--eval-size")] = None,
    val_ratio: Annotated[float | None, typer.Option("--val-ratio")] = None,
    min_total_records: Annotated[int | None, typer.Option("--min-total-records")] = None,
    limit: Annotated[int | None, typer.Option("--limit")] = None,
    random_seed: Annotated[int | None, typer.Option("--random-seed")] = None,
    split_strategy: Annotated[
        str | None, typer.Option("--split-strategy", help="stratified | time")
    ] = None,
    parse_function_arguments: Annotated[
        bool | None,
        typer.Option(
            "--parse-function-arguments/--no-parse-function-arguments",
            help="Write tool-call arguments as JSON objects (default) or as logged strings.",
        ),
    ] = None,
    contamination_threshold: Annotated[
        float | None,
        typer.Option(
            "--contamination-threshold",
            help="Jaccard similarity (0-1] at which eval/train prompt pairs are reported.",
        ),
    ] = None,
) -> None:
    """Write eval, train, validation and ICL files plus manifest.json, as a job would."""
    settings = get_settings()
    given = {
        "eval_size": eval_size,
        "val_ratio": val_ratio,
        "min_total_records": min_total_records,
        "limit": limit,
        "random_seed": random_seed,
        "split_strategy": split_strategy,
        "parse_function_arguments": parse_function_arguments,
        "contamination_threshold": contamination_threshold,
    }
    try:
        overrides = DataSplitOverrides.model_validate(
            {k: v for k, v in given.items() if v is not None}
        )
        config = _config(settings, config_name, overrides)
        log_store = open_log_store(
            settings.log_store_url,
            index=settings.es_collection_name,
            verify_certs=settings.es_verify_certs,
        )
        try:
            result = _build(
                settings=settings,
                log_store=log_store,
                client_id=client_id,
                workload_id=workload_id,
                config=config,
                out=out,
            )
        finally:
            log_store.close()
    except DatasetError as exc:
        _errors.print(f"[red]cannot build datasets:[/red] {exc}")
        raise typer.Exit(1) from exc
    except (FlywheelError, ValueError) as exc:
        # ValueError covers pydantic's ValidationError for bad override values.
        _errors.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    _console.print(_summary(result))
