"""The dataset manifest: what was built, from what, and how (a JSON-able dict).

Fields (documented with an example in docs/datasets.md):

* ``client_id``, ``workload_id``, ``workload_type`` (``tool_calling`` | ``generic``),
  ``tool_calling_records``;
* ``seed`` and ``seed_source`` (``config``, or ``random`` when the config's seed is null, so
  the run can still be reproduced), ``split_strategy``;
* ``stages``: counts at each stage and ``dropped`` per reason code, plus the time windows
  (epoch ms) of the pulled and kept records;
* ``splits``: per split, ``records``, ``by_label`` (tool-name class → count) and
  ``by_tool`` (tool → records calling it), and how the cuts went (``eval_stratified``,
  ``validation_stratified``, ``pooled_classes``);
* ``contamination``: eval items whose prompt (exact, or near-duplicate at
  ``contamination_threshold``) is in train;
* ``token_counters``: per LLM candidate, the counter its budgets used (``tokenizer`` or
  ``estimate``) and why;
* ``icl``: the selection used and one entry per ICL set (file, candidates, budget,
  tokenizer, examples-per-item histogram, items below ``min_examples``);
* ``candidates``: each candidate's ICL file and budget;
* ``files``: per file, ``records``, ``bytes`` and ``sha256``;
* ``config``: the ``data_split_config`` and ``icl_config`` snapshot used.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from flywheel.domain.datasets.dedup import ContaminationHit
from flywheel.domain.datasets.pipeline import CleanRecord, StageCounts
from flywheel.domain.datasets.records import NO_TOOL
from flywheel.domain.datasets.split import SplitResult

FORMAT_VERSION = 1


def label_counts(records: Sequence[CleanRecord], indices: Sequence[int]) -> dict[str, int]:
    """How many records of each label are at ``indices`` (sorted by label)."""
    counts = Counter(records[i].label for i in indices)
    return dict(sorted(counts.items()))


def tool_counts(records: Sequence[CleanRecord], indices: Sequence[int]) -> dict[str, int]:
    """How many records at ``indices`` call each tool (sorted by tool).

    A record calling ``a`` and ``b`` counts once for each (its label ``a+b`` counts once in
    :func:`label_counts`), so a tool's total is visible however it is combined.
    """
    counts: Counter[str] = Counter()
    for i in indices:
        label = records[i].label
        if label != NO_TOOL:
            counts.update(label.split("+"))
    return dict(sorted(counts.items()))


def token_counter_summary(
    candidates: Sequence[str], *, counted: Collection[str], notes: Mapping[str, str]
) -> dict[str, dict[str, str]]:
    """Per LLM candidate: the counter its budgets use (``tokenizer``/``estimate``) and why.

    Recorded because a budget counted with the bytes/3 estimate holds fewer examples than
    the candidate could take; a reader of the manifest should see which one applied.
    """
    summary: dict[str, dict[str, str]] = {}
    for name in candidates:
        kind = "tokenizer" if name in counted else "estimate"
        default = "given by the caller" if kind == "tokenizer" else "estimate: none given"
        summary[name] = {"counter": kind, "detail": notes.get(name, default)}
    return summary


def workload_type(records: Sequence[CleanRecord]) -> str:
    """``tool_calling`` when any kept record calls or is offered tools, else ``generic``."""
    return "tool_calling" if any(r.tool_calling for r in records) else "generic"


def build_manifest(
    *,
    client_id: str,
    workload_id: str,
    records: Sequence[CleanRecord],
    counts: StageCounts,
    split: SplitResult,
    seed_source: str,
    contamination: Sequence[ContaminationHit],
    near_threshold: float,
    token_counters: Mapping[str, Mapping[str, Any]],
    icl: Mapping[str, Any],
    files: Mapping[str, Mapping[str, Any]],
    config: Mapping[str, Any],
) -> dict[str, Any]:
    """Assemble the manifest; eval positions are reported as line numbers of eval.jsonl."""
    eval_line = {pos: line for line, pos in enumerate(split.eval)}
    return {
        "format_version": FORMAT_VERSION,
        "client_id": client_id,
        "workload_id": workload_id,
        "workload_type": workload_type(records),
        "tool_calling_records": sum(1 for r in records if r.tool_calling),
        "seed": split.seed,
        "seed_source": seed_source,
        "split_strategy": split.strategy,
        "stages": counts.as_dict(),
        "splits": {
            name: {
                "records": len(indices),
                "by_label": label_counts(records, indices),
                "by_tool": tool_counts(records, indices),
            }
            for name, indices in (
                ("eval", split.eval),
                ("train", split.train),
                ("validation", split.validation),
            )
        },
        "split_details": {
            "eval_stratified": split.eval_stratified,
            "validation_stratified": split.validation_stratified,
            "pooled_classes": list(split.pooled_classes),
        },
        "contamination": {
            "checked": "exact+near",
            "near_threshold": near_threshold,
            "items": [
                {
                    "eval_line": eval_line[h.eval_position],
                    "train_record": h.train_position,
                    "kind": h.kind,
                }
                for h in contamination
            ],
        },
        "token_counters": {name: dict(info) for name, info in token_counters.items()},
        "icl": dict(icl),
        "files": {name: dict(info) for name, info in files.items()},
        "config": dict(config),
    }
