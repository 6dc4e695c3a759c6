"""A fast fake platform for console tests: move jobs through the StateStore by hand.

Until the workflow lands, jobs stay ``pending``. These helpers write what a real run leaves
behind — dataset stage counts, per-variant scores with bootstrap CIs (computed by the real
metrics code), latency, cost, a LoRA loss curve and a recommendation — in the shapes the
workflow projects onto ``Job`` and ``CandidateRun``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from flywheel.domain.jobs import Job, JobId, JobStatus, utcnow
from flywheel.domain.metrics.stats import bootstrap_mean
from flywheel.stores.base import StateStore

#: Correct answers out of ``EVAL_N`` per variant (base < icl < customized).
EVAL_N = 20
CORRECT = {"base": 13, "icl": 16, "customized": 19}
ARGS_CORRECT = {"base": 11, "icl": 14, "customized": 18}
TRAIN_LOSS = [2.31, 2.05, 1.82, 1.61, 1.47, 1.33, 1.22, 1.15, 1.08, 1.02, 0.98, 0.95]
VAL_LOSS = [1.71, 1.12]


def _score(correct: int, n: int = EVAL_N) -> dict[str, Any]:
    values = [1.0] * correct + [0.0] * (n - correct)
    return bootstrap_mean(values, n_resamples=500, seed=7).to_dict()


def variant_scores(variant: str, *, offset: int = 0) -> dict[str, Any]:
    """Scores of one evaluation, shaped like the workflow's ``score_llm_eval`` output."""
    name_ok = max(0, min(EVAL_N, CORRECT[variant] - offset))
    args_ok = max(0, min(name_ok, ARGS_CORRECT[variant] - offset))
    latency = {"base": 180.0, "icl": 240.0, "customized": 175.0}[variant] + 10 * offset
    return {
        "function_name_accuracy": _score(name_ok),
        "function_name_and_args_accuracy": _score(args_ok),
        "format_validity_rate": _score(EVAL_N),
        "per_tool": {},
        "latency": {
            "p50_ms": latency,
            "p95_ms": latency * 1.6,
            "mean_ms": latency * 1.1,
            "n": EVAL_N,
        },
        "cost": {
            "mean_input_tokens": 410.0 if variant != "icl" else 1220.0,
            "mean_output_tokens": 38.0,
            "cost_per_request": 0.0,
            "cost_per_1k_requests": 0.0089 if variant != "icl" else 0.0252,
            "n": EVAL_N,
        },
        "errors": 0,
        "n": EVAL_N,
        "gate": {
            "passed": variant == "customized",
            "reasons": []
            if variant == "customized"
            else ["function_name_accuracy is below the reference by more than the margin"],
        },
    }


def start_job(store: StateStore, job_id: str, *, progress: float = 40.0) -> Job:
    """Mark a pending job running, mid-way through evaluation."""
    return store.update_job(
        JobId(job_id),
        {
            "status": JobStatus.running,
            "stage": "evaluating",
            "progress": progress,
            "started_at": utcnow(),
        },
    )


def finish_job(
    store: StateStore,
    job_id: str,
    *,
    variants: Sequence[str] = ("base", "icl", "customized"),
) -> Job:
    """Write a realistic finished state for a job and its candidates; return the job."""
    job = store.get_job(JobId(job_id))
    now = utcnow()
    started = job.started_at or now - timedelta(minutes=12)
    runs = store.list_candidate_runs(job.id)
    ranked: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    timings: dict[str, Any] = {}
    for offset, run in enumerate(runs):
        evaluations = []
        for variant in variants:
            scores = variant_scores(variant, offset=offset)
            evaluations.append(
                {
                    "eval_type": variant,
                    "status": "completed",
                    "handle": {"kind": "evaluation", "id": f"eval-{run.name}-{variant}"},
                    "started_at": (started + timedelta(minutes=3)).isoformat(),
                    "finished_at": (started + timedelta(minutes=9)).isoformat(),
                    "runtime_seconds": 360.0,
                    "progress": 100.0,
                    "scores": scores,
                    "error": None,
                }
            )
            label = f"{run.name}/{variant}"
            if scores["gate"]["passed"]:
                ranked.append(
                    {
                        "rank": len(ranked) + 1,
                        "name": label,
                        "cost_per_1k_requests": scores["cost"]["cost_per_1k_requests"],
                        "projected_monthly_cost": 0.53,
                        "projected_monthly_savings": 412.7,
                        "p50_latency_ms": scores["latency"]["p50_ms"],
                        "p95_latency_ms": scores["latency"]["p95_ms"],
                        "note": None,
                    }
                )
            else:
                rejected.append(
                    {"name": label, "failing_tools": [], "reasons": scores["gate"]["reasons"]}
                )
        customization = None
        if "customized" in variants:
            customization = {
                "status": "completed",
                "handle": {"kind": "customization", "id": f"cust-{run.name}"},
                "started_at": (started + timedelta(minutes=2)).isoformat(),
                "finished_at": (started + timedelta(minutes=7)).isoformat(),
                "runtime_seconds": 300.0,
                "progress": 100.0,
                "details": {
                    "steps": len(TRAIN_LOSS),
                    "epochs_completed": len(VAL_LOSS),
                    "train_loss": TRAIN_LOSS,
                    "val_loss": VAL_LOSS,
                    "final_loss": TRAIN_LOSS[-1],
                    "train_seconds": 287.4,
                    "output_model": f"{run.name}-lora-{job.id[-6:]}",
                },
                "error": None,
            }
        store.update_candidate_run(
            job.id,
            run.name,
            {
                "status": "completed",
                "deployment": {
                    "status": "shut_down",
                    "handle": {"kind": "deployment", "id": f"dep-{run.name}"},
                },
                "evaluations": evaluations,
                "customization": customization,
                "error": None,
            },
        )
        timings[run.name] = {"deploy_s": 42.0, "total_s": 540.0}
    recommendation = {
        "ranked": ranked,
        "rejected": rejected,
        "reference_cost_per_1k_requests": 1.8,
        "reference_monthly_cost": 412.2,
        "requests_last_30_days": 229,
        "best": ranked[0]["name"] if ranked else None,
        "timings": {
            "datasets_build_s": 3.2,
            "datasets_s": 4.1,
            "total_s": 700.0,
            "candidates": timings,
        },
    }
    return store.update_job(
        job.id,
        {
            "status": JobStatus.completed,
            "stage": None,
            "progress": 100.0,
            "started_at": started,
            "finished_at": now,
            "dataset_stats": {
                "stages": {
                    "pulled": 64,
                    "valid": 60,
                    "unique": 57,
                    "within_budget": 57,
                    "kept": 57,
                    "dropped": {"truncated": 3, "invalid_tool_arguments": 1, "duplicate": 3},
                },
                "splits": {
                    "eval": {"records": EVAL_N, "by_label": {"get_weather": 12, "book_flight": 8}},
                    "train": {"records": 33, "by_label": {"get_weather": 20, "book_flight": 13}},
                    "validation": {"records": 4, "by_label": {"get_weather": 2, "book_flight": 2}},
                },
                "tool_calling_records": 57,
                "workload_type": "tool_calling",
            },
            "datasets": [
                {"role": "eval", "path": f"/data/jobs/{job.id}/datasets/eval.jsonl"},
                {"role": "train", "path": f"/data/jobs/{job.id}/datasets/train.jsonl"},
                {"role": "validation", "path": f"/data/jobs/{job.id}/datasets/validation.jsonl"},
            ],
            "recommendation": recommendation,
        },
    )
