"""``flywheel logs``: load production logs from a JSONL file into the log store.

``flywheel logs load FILE`` streams the file (``.gz`` too), validates every line, stores the
valid records and prints a summary with the first rejected lines and their reasons.

Exit codes: 0 when at least one record was stored (rejections alone do not fail a load,
they are reported; ``--strict`` makes any rejection exit 1); 1 when nothing could be stored
(empty file, every line rejected, or the store failed); 2 for usage errors (no such file,
an invalid ``--client-id``).
"""

from __future__ import annotations

import gzip
import re
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from flywheel.domain.logs import ID_PATTERN
from flywheel.errors import FlywheelError
from flywheel.services.ingestion import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_LINE_BYTES,
    IngestReport,
    LineReader,
    ingest_lines,
    iter_lines,
)
from flywheel.settings import get_settings
from flywheel.stores.registry import open_log_store

app = typer.Typer(help="Production logs: load and validate.", no_args_is_help=True)

_ID_RE = re.compile(ID_PATTERN)


@app.callback()
def logs() -> None:
    """Production logs (chat and retrieval records)."""


def _check_id(value: str | None) -> str | None:
    if value is not None and not _ID_RE.match(value):
        raise typer.BadParameter(
            f"{value!r} is not a valid id; use 1-128 letters, digits or '._:@-', "
            "starting with a letter or digit"
        )
    return value


@app.command("load")
def load(
    file: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, readable=True, help="JSONL file (or .jsonl.gz)."
        ),
    ],
    client_id: Annotated[
        str | None,
        typer.Option(callback=_check_id, help="Store every record under this client_id."),
    ] = None,
    workload_id: Annotated[
        str | None,
        typer.Option(callback=_check_id, help="Store every record under this workload_id."),
    ] = None,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Records per write to the store.")
    ] = DEFAULT_BATCH_SIZE,
    max_line_bytes: Annotated[
        int, typer.Option(min=1, help="Longer lines are rejected unparsed.")
    ] = DEFAULT_MAX_LINE_BYTES,
    show_errors: Annotated[int, typer.Option(min=0, help="Rejected lines to print.")] = 20,
    strict: Annotated[bool, typer.Option(help="Exit 1 if any line was rejected.")] = False,
) -> None:
    """Validate a JSONL file of log records and store the valid ones."""
    out = Console()
    settings = get_settings()
    report = IngestReport()
    with ExitStack() as stack:
        store = open_log_store(
            settings.log_store_url,
            index=settings.es_collection_name,
            verify_certs=settings.es_verify_certs,
        )
        stack.callback(store.close)
        raw = stack.enter_context(file.open("rb"))
        stream: LineReader = raw
        if file.suffix == ".gz":
            stream = stack.enter_context(gzip.GzipFile(fileobj=raw, mode="rb"))
        progress = stack.enter_context(_progress())
        task = progress.add_task(file.name, total=file.stat().st_size)
        try:
            ingest_lines(
                iter_lines(stream, max_line_bytes=max_line_bytes),
                store=store,
                client_id=client_id,
                workload_id=workload_id,
                max_line_bytes=max_line_bytes,
                batch_size=batch_size,
                on_progress=lambda _r: progress.update(task, completed=raw.tell()),
                report=report,
            )
        except (FlywheelError, OSError, EOFError) as exc:
            progress.stop()
            _print_summary(out, report, show_errors)
            out.print(Text(f"load stopped: {exc}", style="bold red"))
            out.print(f"{report.written} records were stored before it stopped.")
            raise typer.Exit(1) from exc
    _print_summary(out, report, show_errors)
    if report.written == 0 or (strict and report.rejected):
        raise typer.Exit(1)


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )


def _print_summary(out: Console, report: IngestReport, show_errors: int) -> None:
    table = Table(title="Log load summary", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("accepted", str(report.accepted))
    table.add_row("rejected", str(report.rejected))
    table.add_row("stored", str(report.written))
    table.add_row("blank lines skipped", str(report.blank_lines))
    for kind, count in sorted(report.kinds.items()):
        table.add_row(f"kind: {kind}", str(count))
    for fmt, count in sorted(report.timestamp_formats.items()):
        table.add_row(f"timestamps as {fmt}", str(count))
    for (client, workload), count in sorted(report.workloads.items())[:20]:
        table.add_row(f"{client} / {workload}", str(count))
    out.print(table)
    # Reasons quote user data, so nothing below is parsed as rich markup.
    if report.message:
        out.print(report.message, markup=False)
    elif report.written == 0:
        out.print("nothing was stored: every record was rejected")
    for note in report.normalisation_notes():
        out.print(f"note: {note}", markup=False)
    if report.errors and show_errors:
        errors = Table(title="Rejected records", show_lines=False)
        errors.add_column("line", justify="right")
        errors.add_column("field")
        errors.add_column("reason", overflow="fold")
        for error in report.errors[:show_errors]:
            where = str(error.line) if error.line is not None else f"#{error.index}"
            errors.add_row(where, Text(error.field or "(record)"), Text(error.reason))
        out.print(errors)
        hidden = report.rejected - min(show_errors, len(report.errors))
        if hidden > 0:
            out.print(f"... and {hidden} more rejected records (raise --show-errors to see more)")
