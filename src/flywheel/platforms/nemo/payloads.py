"""Evaluator payloads and score parsing (nmp-api.md §8), as pure functions.

Three kinds of evaluation:

* ``tool_calling``: task ``custom-tool-calling``, metric ``tool-calling-accuracy``
  (``function_name_accuracy``, ``function_name_and_args_accuracy``) plus an LLM-judge
  ``correctness`` rating (0/1, ``judge_tool_call_correctness``) when a judge is configured;
* ``generic``: task ``llm-as-judge``, metric ``llm-judge`` with a ``similarity`` rating
  (1-10, mapped onto [0, 1] as ``judge_similarity``);

The judges' rubrics are the shared ones of :mod:`flywheel.domain.metrics.judge`, with the
same tags around the data, so an item is judged alike on either platform.
* ``retriever``: a BEIR task scored by ``recall_<k>`` / ``ndcg_cut_<k>``.

The eval rows are the DFW form ``{"request": {...}, "response": {"choices": [...]}}`` (§9.2).
Each handle carries a *score plan*: where each of our score names lives in the result, so
parsing reads exactly the task and metric keys that were sent (pitfall §12.5).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from flywheel.domain.metrics.judge import (
    CORRECTNESS_SYSTEM,
    JUDGE_SIMILARITY,
    JUDGE_TOOL_CALL_CORRECTNESS,
    SIMILARITY_SYSTEM,
)

EvalKind = Literal["tool_calling", "generic", "retriever"]
ScorePlan = list[dict[str, Any]]  # [{"name", "task", "metric", "score", "offset", "scale"}]

TOOL_TASK = "custom-tool-calling"
JUDGE_TASK = "llm-as-judge"
BEIR_TASK = "flywheel-beir"
#: Cut-offs the retriever evaluator documents (evaluator/metrics/retriever.html).
RETRIEVER_KS = (5, 10, 20, 100)
_RATING = {"type": "int", "parser": {"type": "regex", "pattern": r"RATING:\s*(\d+)"}}

# The user turns mirror build_similarity_prompt / build_tool_call_correctness_prompt: the
# same tags, which the shared rubrics tell the judge to treat as data. NMP renders them with
# Jinja from the eval row (``item``) and the candidate's answer (``sample``).
_SIMILARITY_USER = (
    "<task>\n{{ item.request.messages | tojson }}\n</task>\n\n"
    "<reference>\n{{ item.response.choices[0].message.content }}\n</reference>\n\n"
    "<candidate>\n{{ sample.output_text }}\n</candidate>"
)
_CORRECTNESS_USER = (
    "<task>\n{{ item.request.messages | tojson }}\n</task>\n\n"
    "<tools>\n{{ item.request.tools | tojson }}\n</tools>\n\n"
    "<reference>\n{{ item.response.choices[0].message.tool_calls | tojson }}\n</reference>\n\n"
    "<predicted>\n{{ sample.response.choices[0].message.tool_calls | tojson }}\n</predicted>"
)


def _judge_metric(
    judge: str | dict[str, Any], system: str, user: str, *, score: str
) -> dict[str, Any]:
    return {
        "type": "llm-judge",
        "params": {
            "model": judge,
            "template": {
                "messages": [
                    {"role": "system", "content": system},
                    {"role": "user", "content": user},
                ]
            },
            "scores": {score: _RATING},
        },
    }


def llm_eval_config(
    *,
    kind: Literal["tool_calling", "generic"],
    files_url: str,
    judge: str | dict[str, Any] | None,
    max_tokens: int,
    parallelism: int,
) -> tuple[dict[str, Any], ScorePlan]:
    """The inline ``custom`` config for an LLM evaluation, and its score plan.

    ``judge`` is the judge model reference (a proxy model id or an ``api_endpoint`` object,
    already holding any key); ``None`` leaves the judge metric out.
    """
    plan: ScorePlan = []
    metrics: dict[str, Any] = {}
    params: dict[str, Any] = {"template": {"messages": "{{ item.request.messages | tojson }}"}}
    if kind == "tool_calling":
        task = TOOL_TASK
        params["template"]["tools"] = "{{ item.request.tools | tojson }}"
        params["template"]["tool_choice"] = "required"
        metrics["tool-calling-accuracy"] = {
            "type": "tool-calling",
            "params": {
                "tool_calls_ground_truth": (
                    "{{ item.response.choices[0].message.tool_calls | tojson }}"
                )
            },
        }
        for score in ("function_name_accuracy", "function_name_and_args_accuracy"):
            plan.append(
                {"name": score, "task": task, "metric": "tool-calling-accuracy", "score": score}
            )
        if judge is not None:
            metrics["correctness"] = _judge_metric(
                judge, CORRECTNESS_SYSTEM, _CORRECTNESS_USER, score="rating"
            )
            # A 0/1 verdict: NMP's mean rating is already the share judged correct.
            plan.append(
                {
                    "name": JUDGE_TOOL_CALL_CORRECTNESS,
                    "task": task,
                    "metric": "correctness",
                    "score": "rating",
                }
            )
    else:
        if judge is None:
            raise ValueError("a generic (non tool-calling) evaluation needs an LLM judge")
        task = JUDGE_TASK
        metrics["llm-judge"] = _judge_metric(
            judge, SIMILARITY_SYSTEM, _SIMILARITY_USER, score="similarity"
        )
        plan.append(_similarity_plan(task))
    config = {
        "type": "custom",
        "params": {"parallelism": parallelism, "max_tokens": max_tokens, "temperature": 0.0},
        "tasks": {
            task: {
                "type": "chat-completion",
                "dataset": {"files_url": files_url},
                "params": params,
                "metrics": metrics,
            }
        },
    }
    return config, plan


def _similarity_plan(task: str) -> dict[str, Any]:
    # Ratings are 1-10; judge_similarity maps them linearly onto [0, 1] (1 -> 0, 10 -> 1), the
    # same mapping as our own metric code, so NMP's mean rating and ours can be compared.
    return {
        "name": JUDGE_SIMILARITY,
        "task": task,
        "metric": "llm-judge",
        "score": "similarity",
        "offset": -1.0,
        "scale": 1 / 9,
    }


def retriever_eval_config(
    *, files_url: str, recall_k: Iterable[int]
) -> tuple[dict[str, Any], ScorePlan]:
    """The inline ``retriever`` config over a BEIR dataset, and its score plan."""
    ks = sorted({k for k in recall_k if k in RETRIEVER_KS} | {5, 10})
    metrics: dict[str, Any] = {f"recall_{k}": {"type": f"recall_{k}"} for k in ks}
    metrics["ndcg_cut_10"] = {"type": "ndcg_cut_10"}
    plan: ScorePlan = [
        {"name": f"recall@{k}", "task": BEIR_TASK, "metric": f"recall_{k}", "score": f"recall_{k}"}
        for k in ks
    ]
    plan.append(
        {"name": "ndcg@10", "task": BEIR_TASK, "metric": "ndcg_cut_10", "score": "ndcg_cut_10"}
    )
    config = {
        "type": "retriever",
        "tasks": {
            BEIR_TASK: {
                "type": "beir",
                "dataset": {"files_url": files_url, "format": "beir"},
                "metrics": metrics,
            }
        },
    }
    return config, plan


def retriever_target(*, embeddings_url: str, model_id: str, top_k: int = 10) -> dict[str, Any]:
    """A retriever target whose query and index embeddings come from one served model."""
    endpoint = {"api_endpoint": {"url": embeddings_url, "model_id": model_id}}
    return {
        "type": "retriever",
        "retriever": {
            "pipeline": {
                "query_embedding_model": endpoint,
                "index_embedding_model": endpoint,
                "top_k": top_k,
            }
        },
    }


def _value(metric: object, score: str) -> float | None:
    if not isinstance(metric, Mapping):
        return None
    scores = metric.get("scores")
    if not isinstance(scores, Mapping):
        return None
    entry = scores.get(score)
    value = entry.get("value") if isinstance(entry, Mapping) else None
    return float(value) if isinstance(value, int | float) else None


def _metric_tables(results: Mapping[str, Any]) -> Iterable[tuple[str, Mapping[str, Any]]]:
    for section in ("tasks", "groups"):
        blocks = results.get(section)
        if not isinstance(blocks, Mapping):
            continue
        for name, block in blocks.items():
            metrics = block.get("metrics") if isinstance(block, Mapping) else None
            if isinstance(metrics, Mapping):
                yield str(name), metrics


def find_score(results: Mapping[str, Any], *, task: str, metric: str, score: str) -> float | None:
    """A score's value, searched robustly (§8.5, §8.7).

    First the exact path ``tasks[task].metrics[metric].scores[score]``; then the metric
    under any task or group, also as ``retriever.<metric>``; then the score key under any
    metric (the documented ``groups.evaluation.metrics.evaluation`` form).
    """
    tables = list(_metric_tables(results))
    for name, metrics in tables:
        if name == task and (found := _value(metrics.get(metric), score)) is not None:
            return found
    for aliased in (metric, f"retriever.{metric}", metric.removeprefix("retriever.")):
        for _, metrics in tables:
            if (found := _value(metrics.get(aliased), score)) is not None:
                return found
    for _, metrics in tables:
        for candidate in metrics.values():
            if (found := _value(candidate, score)) is not None:
                return found
    return None


def parse_scores(results: Mapping[str, Any], plan: ScorePlan) -> dict[str, float]:
    """Our score names → values, for every planned score the result holds."""
    scores: dict[str, float] = {}
    for item in plan:
        value = find_score(results, task=item["task"], metric=item["metric"], score=item["score"])
        if value is not None:
            offset = float(item.get("offset", 0.0))
            scores[item["name"]] = (value + offset) * float(item.get("scale", 1.0))
    return scores
