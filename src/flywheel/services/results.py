"""A job's results as a table: one row per candidate, variant and metric (for CSV export).

Embedding jobs with a production-retriever reference row add its metrics after the
candidates, with ``variant`` = ``reference`` so a spreadsheet can tell it from a candidate.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping
from typing import Any

from flywheel.services.jobs import JobDetail
from flywheel.services.promotions import evidence

COLUMNS = (
    "job_id",
    "client_id",
    "workload_id",
    "candidate",
    "variant",
    "eval_status",
    "metric",
    "value",
    "ci_low",
    "ci_high",
    "n",
    "source",
    "platform_value",
)


#: ``variant`` (and ``eval_status``) of the reference row's lines.
REFERENCE_VARIANT = "reference"


def result_rows(detail: JobDetail) -> Iterator[dict[str, Any]]:
    """Every evaluation's metrics (value, CI, n), latency and cost, in candidate order.

    Then the reference row's metrics, if the job has one (its ``n`` is the covered queries).
    """
    job = detail.job
    for run in detail.candidates:
        for evaluation in run.evaluations:
            base = {
                "job_id": job.id,
                "client_id": job.client_id,
                "workload_id": job.workload_id,
                "candidate": run.name,
                "variant": evaluation.get("eval_type"),
                "eval_status": evaluation.get("status"),
            }
            scores = evaluation.get("scores")
            if not isinstance(scores, Mapping):
                yield {**base, "metric": None}
                continue
            for metric, value in evidence(scores).items():
                if isinstance(value, Mapping):
                    yield {**base, "metric": metric, **value}
                else:
                    yield {**base, "metric": metric, "value": value}
    yield from _reference_rows(detail)


def _reference_rows(detail: JobDetail) -> Iterator[dict[str, Any]]:
    job = detail.job
    reference = (job.recommendation or {}).get("reference")
    if not isinstance(reference, Mapping):
        return
    base = {
        "job_id": job.id,
        "client_id": job.client_id,
        "workload_id": job.workload_id,
        "candidate": reference.get("name"),
        "variant": REFERENCE_VARIANT,
        "eval_status": REFERENCE_VARIANT,
    }
    for metric, value in evidence(reference.get("metrics") or {}).items():
        yield {**base, "metric": metric, **value}


def results_csv(detail: JobDetail) -> str:
    """The rows as CSV text with a header line (empty cells for missing values)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in result_rows(detail):
        writer.writerow(row)
    return out.getvalue()
