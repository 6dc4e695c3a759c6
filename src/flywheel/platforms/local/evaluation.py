"""Run one evaluation: answer the eval set with the candidate, then (optionally) judge.

Spec keys (``spec.json``): ``candidate`` (a :class:`ModelSource` dict), ``eval_file``,
``adapter_dir`` (customized variant), ``judge`` (a source dict or ``None``),
``max_new_tokens``, ``max_concurrency`` (endpoints), ``batch_size`` (in-process),
``torch_threads``.

The result lists one prediction per eval line, in file order, and ``platform_scores``
computed with the shared domain metrics: tool-calling accuracies, the format validity
rate, ``format_errors`` (tool-call blocks the parser could not read) and, with a judge,
the judge's score with ``judge_parse_failures`` beside it: ``judge_tool_call_correctness``
(0/1) for a tool-calling eval set, ``judge_similarity`` (1-10 mapped to [0, 1]) for a generic
one. Without a judge neither is present: no judge is not a score of 0.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson

from flywheel.domain.metrics import (
    build_similarity_prompt,
    build_tool_call_correctness_prompt,
    evaluate_tool_calls,
    judge_metric,
    summarize_judge,
)
from flywheel.domain.metrics.judge import judged_as_tool_calling
from flywheel.platforms.base import ItemPrediction
from flywheel.platforms.local.jobfiles import Cancelled, WorkDir, write_json_atomic
from flywheel.platforms.local.models import ModelSource

Chat = tuple[Sequence[Mapping[str, Any]], Sequence[Mapping[str, Any]] | None]


def read_eval_items(path: Path) -> list[dict[str, Any]]:
    """Eval lines: ``{"request": {"messages", "tools"}, "response": {"choices": [...]}}``."""
    items = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            items.append(orjson.loads(line))
    return items


def _reference(item: Mapping[str, Any]) -> dict[str, Any] | None:
    choices = (item.get("response") or {}).get("choices") or []
    return dict(choices[0].get("message") or {}) if choices else None


def answer_text(message: Mapping[str, Any] | None) -> str:
    """An assistant message as text for the judge: content, then tool calls as JSON."""
    if not message:
        return ""
    parts = [str(message.get("content") or "")]
    if message.get("tool_calls"):
        calls = [c.get("function", c) for c in message["tool_calls"]]
        parts.append(orjson.dumps(calls).decode())
    return "\n".join(p for p in parts if p)


def is_tool_calling(chats: Sequence[Chat], references: Sequence[Mapping[str, Any] | None]) -> bool:
    """Whether the eval set is judged for tool-call correctness (the shared rule, see
    :func:`~flywheel.domain.metrics.judge.judged_as_tool_calling`)."""
    return judged_as_tool_calling((tools for _, tools in chats), references)


def judge_prompts(
    *,
    chats: Sequence[Chat],
    references: Sequence[Mapping[str, Any] | None],
    answers: Sequence[Mapping[str, Any]],
    tool_calling: bool,
) -> list[Chat]:
    """One judge chat per item: the tool-call correctness prompt or the similarity prompt."""
    prompts: list[Chat] = []
    for (messages, tools), ref, answer in zip(chats, references, answers, strict=True):
        predicted = answer.get("message")
        if tool_calling:
            prompt = build_tool_call_correctness_prompt(
                task_messages=messages,
                reference_tool_calls=(ref or {}).get("tool_calls") or [],
                predicted_tool_calls=(predicted or {}).get("tool_calls") or [],
                tools=tools,
            )
        else:
            prompt = build_similarity_prompt(
                task_messages=messages,
                reference=answer_text(ref),
                candidate=answer_text(predicted),
            )
        prompts.append((prompt, None))
    return prompts


def answer_chats(
    *,
    source: ModelSource,
    chats: Sequence[Chat],
    spec: Mapping[str, Any],
    adapter_dir: str | None,
    should_stop: Callable[[], bool],
    on_progress: Callable[[int], None],
) -> list[dict[str, Any]]:
    """Answer chats with a source; one dict per chat (message, tokens, latency, error)."""
    max_new_tokens = int(spec.get("max_new_tokens", 512))
    if source.kind == "endpoint":
        from flywheel.platforms.local.endpoint import EndpointClient

        client = EndpointClient(source, concurrency=int(spec.get("max_concurrency", 8)))
        answers = client.complete(
            chats, max_new_tokens=max_new_tokens, should_stop=should_stop, on_item=on_progress
        )
        if answers is None:
            raise Cancelled
        return [asdict(a) for a in answers]

    from flywheel.platforms.local.generation import LocalGenerator
    from flywheel.platforms.local.models import (
        choose_device,
        load_causal_lm,
        load_tokenizer,
        set_threads,
    )

    set_threads(int(spec.get("torch_threads", 0)))
    device = choose_device()
    tokenizer = load_tokenizer(source)
    model = load_causal_lm(source, device=device, adapter_dir=adapter_dir)
    generator = LocalGenerator(
        tokenizer=tokenizer, model=model, device=device, batch_size=int(spec.get("batch_size", 8))
    )
    generated = generator.generate(
        chats, max_new_tokens=max_new_tokens, should_stop=should_stop, on_batch=on_progress
    )
    del generator, model
    gc.collect()
    if generated is None:
        raise Cancelled
    return [
        {
            "message": g.message,
            "latency_ms": g.latency_ms,
            "input_tokens": g.input_tokens,
            "output_tokens": g.output_tokens,
            "format_errors": g.format_errors,
            "error": None,
        }
        for g in generated
    ]


def _score(
    references: list[dict[str, Any] | None], answers: list[dict[str, Any]]
) -> dict[str, float]:
    report = evaluate_tool_calls(references, [a["message"] for a in answers], n_resamples=100)
    scores: dict[str, float] = {
        "format_errors": float(sum(a.get("format_errors") or 0 for a in answers)),
        "errors": float(sum(1 for a in answers if a.get("error"))),
    }
    for name in (
        "function_name_accuracy",
        "function_name_and_args_accuracy",
        "format_validity_rate",
    ):
        value = getattr(report, name).value
        if value is not None:
            scores[name] = value
    return scores


def _judge_scores(replies: Sequence[str | None], *, tool_calling: bool) -> dict[str, float]:
    """The judge's mean (absent when no reply parsed) and its parse failures, always."""
    metric = judge_metric(tool_calling=tool_calling)
    summary = summarize_judge(replies, metric=metric, n_resamples=100)
    scores = {"judge_parse_failures": float(summary.parse_failures)}
    if summary.score.value is not None:
        scores[metric] = summary.score.value
    return scores


def run_evaluation(work: WorkDir, spec: Mapping[str, Any]) -> None:
    """Evaluate, writing progress as it goes and ``result.json`` at the end."""
    items = read_eval_items(Path(spec["eval_file"]))
    chats: list[Chat] = [
        (item["request"]["messages"], item["request"].get("tools") or None) for item in items
    ]
    references = [_reference(item) for item in items]
    judge = ModelSource.from_dict(spec["judge"]) if spec.get("judge") else None
    share = 0.7 if judge else 1.0
    total = max(len(items), 1)

    def progress(phase: str, done: int, base: float, weight: float) -> None:
        work.report(
            "running",
            percent=round(100 * (base + weight * done / total), 1),
            message=f"{phase}: {done}/{len(items)}",
            details={"phase": phase, "done": done, "total": len(items)},
        )

    work.report("running", percent=0.0, message="loading model")
    answers = answer_chats(
        source=ModelSource.from_dict(spec["candidate"]),
        chats=chats,
        spec=spec,
        adapter_dir=spec.get("adapter_dir"),
        should_stop=work.cancel_requested,
        on_progress=lambda done: progress("answering", done, 0.0, share),
    )
    scores = _score(references, answers)
    judge_replies: list[str | None] = [None] * len(items)
    if judge is not None:
        tool_calling = is_tool_calling(chats, references)
        judged = answer_chats(
            source=judge,
            chats=judge_prompts(
                chats=chats, references=references, answers=answers, tool_calling=tool_calling
            ),
            spec={**spec, "max_new_tokens": 128},
            adapter_dir=None,
            should_stop=work.cancel_requested,
            on_progress=lambda done: progress("judging", done, share, 1 - share),
        )
        judge_replies = [
            (j["message"] or {}).get("content") if not j.get("error") else None for j in judged
        ]
        scores.update(_judge_scores(judge_replies, tool_calling=tool_calling))
    predictions = [
        ItemPrediction(
            index=i,
            response=answer["message"],
            latency_ms=answer.get("latency_ms"),
            input_tokens=answer.get("input_tokens"),
            output_tokens=answer.get("output_tokens"),
            error=answer.get("error"),
            judge_reply=judge_replies[i],
        )
        for i, answer in enumerate(answers)
    ]
    write_json_atomic(
        work.result,
        {
            "platform_scores": scores,
            "predictions": [asdict(p) for p in predictions],
            "artifacts": {"result_file": str(work.result)},
        },
    )
    work.report("completed", percent=100.0, message=f"{len(items)} items evaluated")
