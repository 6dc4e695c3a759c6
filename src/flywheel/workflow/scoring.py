"""Finalize's arithmetic: turn evaluation outcomes into scores with CIs and a recommendation.

Scores are recomputed by :mod:`flywheel.domain.metrics` from the candidate's per-item
predictions against the reference answers in the eval file (the production model's own
responses), so both platforms are scored by the same code. The judge's per-item replies are
parsed by the workload's judge: ``judge_tool_call_correctness`` (0/1) for tool calling,
``judge_similarity`` (1-10 → [0, 1]) for generic workloads. A platform that returns only
its own aggregate scores is reported as such (``source: platform``), without intervals; one
that returns both keeps its value beside ours (``platform_value``, ``differs``).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from flywheel.config.schema import CandidateModel, JobConfig
from flywheel.domain.metrics import (
    CandidateOutcome,
    LatencySummary,
    PairedScores,
    estimate_cost,
    evaluate_gate,
    evaluate_retrieval,
    evaluate_tool_calls,
    group_by_reference_tool,
    judge_metric,
    recommend,
    summarize_judge,
    summarize_latency,
)
from flywheel.domain.metrics.judge import eval_rows_judged_as_tool_calling
from flywheel.platforms.base import EvaluationOutcome
from flywheel.services.retrieval_datasets import REFERENCE_RUN_FILE

GATED_TOOL_METRICS = ("function_name_accuracy", "function_name_and_args_accuracy")


def read_references(eval_file: Path) -> list[dict[str, Any] | None]:
    """The reference assistant message of every row of an eval JSONL file, in order."""
    refs: list[dict[str, Any] | None] = []
    with eval_file.open("rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            row = orjson.loads(line)
            choices = (row.get("response") or {}).get("choices") or [{}]
            refs.append(choices[0].get("message"))
    return refs


def judged_as_tool_calling_file(eval_file: Path) -> bool:
    """Whether the platform judged this eval file for tool-call correctness: the same rule,
    over the same rows, that the platforms apply when they prompt the judge, so replies are
    always parsed with the rubric they answered."""
    with eval_file.open("rb") as fh:
        rows = [orjson.loads(line) for line in fh if line.strip()]
    return eval_rows_judged_as_tool_calling(rows)


def read_reference_usage(eval_file: Path) -> tuple[list[float], list[float]]:
    """Token usage the production model reported per eval row (rows without usage skipped)."""
    inputs: list[float] = []
    outputs: list[float] = []
    with eval_file.open("rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            usage = (orjson.loads(line).get("response") or {}).get("usage") or {}
            if "prompt_tokens" in usage and "completion_tokens" in usage:
                inputs.append(float(usage["prompt_tokens"]))
                outputs.append(float(usage["completion_tokens"]))
    return inputs, outputs


@dataclass(frozen=True)
class GateInput:
    """What the gate and the recommendation need of one evaluated variant."""

    metrics: dict[str, PairedScores]
    tool_groups: dict[str, tuple[int, ...]]
    cost_per_1k_requests: float
    latency: LatencySummary


def confusion_rows(confusion: Mapping[str, Mapping[str, int]]) -> list[dict[str, Any]]:
    """The tool-call confusion table as ``{reference, predicted, count}`` rows (JSON-ready)."""
    return [
        {"reference": ref, "predicted": pred, "count": count}
        for ref, row in confusion.items()
        for pred, count in row.items()
    ]


def score_llm_eval(
    *,
    outcome: EvaluationOutcome,
    references: Sequence[Mapping[str, Any] | None],
    candidate: CandidateModel,
    config: JobConfig,
    tool_calling: bool,
    judge_tool_calling: bool | None = None,
) -> tuple[dict[str, Any], GateInput | None]:
    """Scores of one LLM evaluation, and what its gate needs.

    ``tool_calling`` is the workload's type (exact-match accuracies, gating);
    ``judge_tool_calling`` the rubric the judge answered (default: the same), which the
    platform chose from the eval set itself (:func:`judged_as_tool_calling_file`).

    The gate input is ``None`` when there are no per-item predictions (or no gated metric).
    """
    ev = config.evaluation_config
    n_resamples, confidence = ev.bootstrap_samples, ev.confidence_level
    if not outcome.predictions:
        return {
            name: {"value": value, "source": "platform"}
            for name, value in outcome.platform_scores.items()
        }, None
    by_index = {p.index: p for p in outcome.predictions}
    preds = [by_index.get(i) for i in range(len(references))]
    responses = [p.response if p is not None else None for p in preds]
    scores: dict[str, Any] = {}
    gated: dict[str, PairedScores] = {}
    groups: dict[str, tuple[int, ...]] = {}
    if tool_calling:
        report = evaluate_tool_calls(
            references, responses, n_resamples=n_resamples, confidence=confidence
        )
        scores["function_name_accuracy"] = report.function_name_accuracy.to_dict()
        scores["function_name_and_args_accuracy"] = report.function_name_and_args_accuracy.to_dict()
        scores["format_validity_rate"] = report.format_validity_rate.to_dict()
        scores["per_tool"] = {tool: b.to_dict() for tool, b in report.per_tool.items()}
        # Which tool the candidate called instead of the reference's: the accuracy says how
        # often it is wrong, this says how (a list, so score summaries skip it as a metric).
        scores["confusion"] = confusion_rows(report.confusion)
        for metric in GATED_TOOL_METRICS:
            values = report.per_item(metric)
            gated[metric] = PairedScores(candidate=values, reference=[1.0] * len(values))
        groups = dict(group_by_reference_tool(report.items))
    replies = [p.judge_reply if p is not None else None for p in preds]
    if any(r is not None for r in replies):
        rubric_tools = tool_calling if judge_tool_calling is None else judge_tool_calling
        metric = judge_metric(tool_calling=rubric_tools)
        judge = summarize_judge(
            replies, metric=metric, n_resamples=n_resamples, confidence=confidence
        )
        scores[metric] = {**judge.score.to_dict(), "parse_failures": judge.parse_failures}
        if not tool_calling:
            # A tool workload is gated on its exact-match accuracies; the correctness judge
            # is reported beside them, not gated, as it judges the same calls less strictly.
            gated[metric] = PairedScores(
                candidate=list(judge.per_item), reference=[1.0] * len(judge.per_item)
            )
    latencies = [p.latency_ms for p in preds if p is not None and p.latency_ms is not None]
    latency = summarize_latency(latencies)
    scores["latency"] = latency.to_dict()
    with_tokens = [
        p
        for p in preds
        if p is not None and p.input_tokens is not None and p.output_tokens is not None
    ]
    cost = estimate_cost(
        pricing=candidate.pricing,
        input_tokens=[float(p.input_tokens or 0) for p in with_tokens],
        output_tokens=[float(p.output_tokens or 0) for p in with_tokens],
    )
    scores["cost"] = cost.to_dict()
    scores["errors"] = {"value": sum(1 for p in preds if p is None or p.error is not None)}
    scores["n"] = {"value": len(references)}
    scores = beside_platform_scores(scores, outcome.platform_scores)
    if not gated:
        return scores, None
    return scores, GateInput(gated, groups, cost.cost_per_1k_requests, latency)


def gate_and_recommend(
    *,
    variants: Mapping[str, GateInput],
    config: JobConfig,
    reference_cost_per_1k: float,
    requests_last_30_days: int,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Gate every variant (``"model/base"`` …) and rank the passing ones by cost.

    Returns the recommendation and each variant's gate verdict.
    """
    ev = config.evaluation_config
    outcomes: list[CandidateOutcome] = []
    gates: dict[str, dict[str, Any]] = {}
    for name, partial in variants.items():
        gate = evaluate_gate(
            candidate=name,
            metrics=partial.metrics,
            margin=ev.parity_margin,
            tool_groups=partial.tool_groups or None,
            n_resamples=ev.bootstrap_samples,
            confidence=ev.confidence_level,
        )
        gates[name] = gate.to_dict()
        outcomes.append(
            CandidateOutcome(
                name=name,
                gate=gate,
                cost_per_1k_requests=partial.cost_per_1k_requests,
                latency=partial.latency,
            )
        )
    rec = recommend(
        candidates=outcomes,
        reference_cost_per_1k_requests=reference_cost_per_1k,
        requests_last_30_days=requests_last_30_days,
    )
    return {**rec.to_dict(), "best": rec.best.name if rec.best else None}, gates


def read_qrels(beir_dir: Path) -> dict[str, set[str]]:
    """``query-id → relevant corpus ids`` from a BEIR ``qrels/test.tsv``."""
    qrels: dict[str, set[str]] = {}
    with (beir_dir / "qrels" / "test.tsv").open(newline="") as fh:
        reader = csv.reader(fh, delimiter="\t")
        for row in reader:
            if len(row) < 3 or row[0] == "query-id":
                continue
            if float(row[2]) > 0:
                qrels.setdefault(row[0], set()).add(row[1])
    return qrels


def score_retrieval_eval(
    *, outcome: EvaluationOutcome, qrels: Mapping[str, set[str]], config: JobConfig
) -> dict[str, Any]:
    """recall@k / nDCG@10 / MRR@10 with CIs from an embedding evaluation's rankings."""
    ev = config.evaluation_config
    if not outcome.rankings:
        return {
            name: {"value": value, "source": "platform"}
            for name, value in outcome.platform_scores.items()
        }
    ids = sorted(qrels)
    report = evaluate_retrieval(
        [outcome.rankings.get(q, []) for q in ids],
        [qrels[q] for q in ids],
        query_ids=ids,
        recall_ks=config.embedding_config.recall_k,
        n_resamples=ev.bootstrap_samples,
        confidence=ev.confidence_level,
    )
    scores = {name: score.to_dict() for name, score in report.metrics.items()}
    return beside_platform_scores(scores, outcome.platform_scores)


#: Our value and the platform's value of one metric "differ" when further apart than this.
PLATFORM_DIFFERENCE = 1e-6


def beside_platform_scores(
    ours: Mapping[str, Any], platform: Mapping[str, float]
) -> dict[str, Any]:
    """Our recomputed scores with the platform's own value of each metric kept beside ours.

    NMP aggregates its own way (its ``value`` and ``stats.mean`` can already disagree), so a
    job that shows only one number hides whether a difference is our bug or the platform's
    quirk. Each metric both computed gets ``source: flywheel``, ``platform_value`` and
    ``differs``; a metric only the platform reports is kept as ``source: platform``.
    """
    merged = dict(ours)
    for name, value in platform.items():
        mine = merged.get(name)
        if isinstance(mine, Mapping) and "value" in mine:
            ours_value = mine["value"]
            differs = ours_value is None or abs(float(ours_value) - value) > PLATFORM_DIFFERENCE
            merged[name] = {
                **mine,
                "source": "flywheel",
                "platform_value": value,
                "differs": differs,
            }
        else:
            merged[name] = {"value": value, "source": "platform"}
    return merged


#: The reference row's display name: the production retriever, scored from its own logged ranking.
REFERENCE_NAME = "production retriever"


def read_reference_run(datasets_root: Path) -> dict[str, list[str]] | None:
    """``query-id → ranked doc ids`` from the datasets' ``reference_run.json``.

    ``None`` when there is no file: datasets built before the file existed have none, which is
    not an error; the job just has no reference row.
    """
    path = datasets_root / REFERENCE_RUN_FILE
    if not path.is_file():
        return None
    try:
        data = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); rebuild the job's datasets") from exc
    if not isinstance(data, dict):
        raise ValueError(
            f"{path}: expected a JSON object of query id → ranked doc ids, got "
            f"{type(data).__name__}; rebuild the job's datasets"
        )
    return {str(q): [str(d) for d in ids] for q, ids in data.items() if isinstance(ids, list)}


def score_reference_run(
    *,
    run: Mapping[str, Sequence[str]] | None,
    qrels: Mapping[str, set[str]],
    config: JobConfig,
) -> tuple[dict[str, Any] | None, str | None]:
    """The production retriever's row, or ``None`` and the reason there is none.

    Scored with exactly the metrics, CI settings and recall cut-offs of the candidates, so
    the row is comparable; but only over the eval queries that have a production ranking
    (a query without one cannot be scored as a miss: the retriever did answer it, we just
    cannot trust the logged order). ``queries`` is that covered count, ``eval_queries`` all
    of them, so a reader sees when the row rests on fewer queries than the candidates.
    """
    if run is None:
        return None, (
            "no production-retriever row: the job's datasets have no reference_run.json "
            "(built by an older version); rerun the job to score the production ranking"
        )
    covered = sorted(q for q in qrels if run.get(q))
    if not covered:
        return None, (
            "no production-retriever row: the retrieval logs of the eval queries carry no "
            "retriever ranks or scores on every passage; log `rank` or `score` for each "
            "retrieved passage to compare candidates with the production retriever"
        )
    ev = config.evaluation_config
    report = evaluate_retrieval(
        [run[q] for q in covered],
        [qrels[q] for q in covered],
        query_ids=covered,
        recall_ks=config.embedding_config.recall_k,
        n_resamples=ev.bootstrap_samples,
        confidence=ev.confidence_level,
    )
    row = {
        "name": REFERENCE_NAME,
        "source": "reference_run.json",
        "queries": len(report.query_ids),
        "eval_queries": len(qrels),
        "excluded_queries": len(qrels) - len(report.query_ids),
        "metrics": {name: score.to_dict() for name, score in report.metrics.items()},
    }
    return row, None


def reference_row(
    *, datasets_root: Path, qrels: Mapping[str, set[str]], config: JobConfig
) -> tuple[dict[str, Any] | None, str | None]:
    """Read and score the datasets' reference run; a bad file costs the row, not the job.

    The row is a yardstick: a corrupt ``reference_run.json`` must not fail a job whose
    candidates were evaluated, so it becomes the reason the row is missing.
    """
    try:
        run = read_reference_run(datasets_root)
    except ValueError as exc:  # orjson.JSONDecodeError is a ValueError
        return None, f"no production-retriever row: {exc}"
    return score_reference_run(run=run, qrels=qrels, config=config)


def rank_retrieval(
    variants: Mapping[str, Mapping[str, Any]], metric: str = "ndcg@10"
) -> dict[str, Any]:
    """Embedding recommendation: variants ordered by ``metric`` (higher is better)."""
    scored = [
        (name, s[metric]["value"])
        for name, s in variants.items()
        if isinstance(s.get(metric), Mapping) and s[metric].get("value") is not None
    ]
    scored.sort(key=lambda x: (-float(x[1]), x[0]))
    return {
        "metric": metric,
        "ranked": [{"rank": i, "name": n, metric: v} for i, (n, v) in enumerate(scored, start=1)],
        "best": scored[0][0] if scored else None,
    }


def reference_cost(config: JobConfig, eval_file: Path) -> float:
    """Cost per 1k requests of the production model, from its logged token usage."""
    inputs, outputs = read_reference_usage(eval_file)
    return estimate_cost(
        pricing=config.evaluation_config.reference_pricing,
        input_tokens=inputs,
        output_tokens=outputs,
    ).cost_per_1k_requests
