"""Build a workload's eval / train / validation / ICL datasets from its logs (the I/O side).

The domain pipeline (:mod:`flywheel.domain.datasets`) decides; this module streams records
out of the log store, spills the rendered rows to scratch files (so memory grows with the
records kept, ~150 bytes plus the user text each, not with their bodies), and writes the
JSONL files and ``manifest.json``. Files are written under temporary names and renamed at
the end, manifest last, so a crashed build never leaves a directory that looks complete.
"""

from __future__ import annotations

import gc
import os
import secrets
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import structlog

from flywheel.config.schema import JobConfig
from flywheel.domain.datasets.dedup import find_contamination
from flywheel.domain.datasets.icl import (
    ExampleCache,
    PoolEntry,
    Preference,
    TokenCounter,
    estimate_tokens,
    fill_examples,
    group_budgets,
    semantic_preferences,
    uniform_preferences,
)
from flywheel.domain.datasets.manifest import (
    build_manifest,
    token_counter_summary,
    workload_type,
)
from flywheel.domain.datasets.pipeline import CleanRecord, RecordCleaner
from flywheel.domain.datasets.split import SplitResult, split_records
from flywheel.domain.jobs import JobType
from flywheel.domain.logs import ChatLog, LogKind
from flywheel.errors import DatasetError
from flywheel.services.dataset_files import DatasetFile, JsonlWriter, SpillFile
from flywheel.stores.base import LogStore

log = structlog.get_logger(__name__)

Embedder = Callable[[list[str]], npt.NDArray[np.floating[Any]]]
#: Semantic selection embeds at most this many train records (a seeded sample beyond it):
#: enough for good neighbours, bounded cost for an embedding model.
SEMANTIC_POOL_LIMIT = 5000
EMBED_BATCH = 256
EVAL_FILE, TRAIN_FILE, VAL_FILE, MANIFEST_FILE = (
    "eval.jsonl",
    "train.jsonl",
    "validation.jsonl",
    "manifest.json",
)


@dataclass(frozen=True)
class DatasetBuildResult:
    """What :func:`build_datasets` wrote."""

    out_dir: Path
    manifest: dict[str, Any]
    files: dict[str, DatasetFile]
    workload_type: str
    #: Candidate name → its ICL eval file (absent when ICL is off or there are no LLMs).
    icl_files: dict[str, Path]
    #: Seconds per stage: ``stream`` (pull + validate + dedup + render), ``split``,
    #: ``write``, ``icl``.
    stage_seconds: dict[str, float] = field(default_factory=dict)


def _notify(on_stage: Callable[[str], None] | None, stage: str) -> None:
    if on_stage is not None:
        on_stage(stage)


def _embed_all(embed: Embedder, texts: Sequence[str]) -> npt.NDArray[np.float64]:
    parts = [
        np.asarray(embed(list(texts[i : i + EMBED_BATCH])), dtype=np.float64)
        for i in range(0, len(texts), EMBED_BATCH)
    ]
    vectors = np.vstack(parts) if parts else np.zeros((0, 1))
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    normalised: npt.NDArray[np.float64] = vectors / np.where(norms == 0, 1.0, norms)
    return normalised


def _preferences(
    *,
    records: Sequence[CleanRecord],
    split: SplitResult,
    pool: list[PoolEntry],
    config: JobConfig,
    embed: Embedder | None,
) -> tuple[list[Preference], str]:
    icl = config.icl_config
    if icl.example_selection == "semantic_similarity" and embed is not None:
        if len(pool) > SEMANTIC_POOL_LIMIT:
            rng = np.random.default_rng(split.seed)
            keep = np.sort(rng.choice(len(pool), SEMANTIC_POOL_LIMIT, replace=False))
            pool[:] = [pool[int(i)] for i in keep]
        eval_vectors = _embed_all(embed, [records[i].user_text for i in split.eval])
        pool_vectors = _embed_all(embed, [records[e.position].user_text for e in pool])
        prefs = semantic_preferences(
            pool,
            eval_vectors @ pool_vectors.T,
            max_examples=icl.max_examples,
            relevance_ratio=icl.similarity_config.relevance_ratio,
        )
        return prefs, "semantic_similarity"
    if icl.example_selection == "semantic_similarity":
        log.warning("icl_semantic_without_embedder", fallback="uniform_distribution")
    prefs = uniform_preferences(pool, n_items=len(split.eval), max_examples=icl.max_examples)
    return prefs, "uniform_distribution"


def _build_icl(
    *,
    records: Sequence[CleanRecord],
    split: SplitResult,
    spill: SpillFile,
    config: JobConfig,
    out_dir: Path,
    token_counters: Mapping[str, TokenCounter],
    embed: Embedder | None,
) -> tuple[dict[str, Any], dict[str, DatasetFile], dict[str, Path]]:
    icl = config.icl_config
    llms = config.candidates_for(JobType.llm_job)
    if icl.max_examples == 0 or not llms:
        return {"selection": None, "sets": [], "candidates": {}}, {}, {}
    groups = group_budgets(
        [(c.name, c.context_length) for c in llms],
        max_context_length=icl.max_context_length,
        reserved_tokens=icl.reserved_tokens,
        counters=token_counters,
    )
    pool = [
        PoolEntry(i, records[i].label, records[i].sft_size, records[i].prompt_key)
        for i in split.train
    ]
    prefs, used = _preferences(records=records, split=split, pool=pool, config=config, embed=embed)
    by_position = {e.position: e for e in pool}
    eval_rows = [spill.eval_row(i) for i in split.eval]
    sets: list[dict[str, Any]] = []
    files: dict[str, DatasetFile] = {}
    candidate_files: dict[str, Path] = {}
    candidates: dict[str, Any] = {}
    for number, group in enumerate(groups, start=1):
        name = f"icl_eval_{number}.jsonl"
        writer = JsonlWriter(out_dir / name)
        cache = ExampleCache(load=spill.sft_row, counter=group.counter)
        histogram: Counter[int] = Counter()
        below: list[int] = []
        try:
            for line, (pos, row, pref) in enumerate(zip(split.eval, eval_rows, prefs, strict=True)):
                icl_row, outcome = fill_examples(
                    eval_position=pos,
                    eval_row=row,
                    eval_key=records[pos].prompt_key,
                    preference=pref,
                    pool=by_position,
                    cache=cache,
                    budget=group.budget,
                    max_examples=icl.max_examples,
                    min_examples=icl.min_examples,
                )
                writer.write(orjson.dumps(icl_row))
                histogram[len(outcome.examples)] += 1
                if outcome.below_min:
                    below.append(line)
        except BaseException:
            writer.abort()
            raise
        files[name] = writer.commit()
        sets.append(
            {
                "file": name,
                "candidates": list(group.candidates),
                "budget_tokens": group.budget,
                "tokenizer": group.tokenizer,
                "examples_per_item": {str(k): v for k, v in sorted(histogram.items())},
                "items_below_min_examples": below,
            }
        )
        for candidate in group.candidates:
            candidate_files[candidate] = files[name].path
            candidates[candidate] = {"icl_file": name, "budget_tokens": group.budget}
    summary = {
        "selection_requested": icl.example_selection,
        "selection": used,
        "sets": sets,
        "candidates": candidates,
    }
    return summary, files, candidate_files


def build_datasets(
    *,
    log_store: LogStore,
    client_id: str,
    workload_id: str,
    config: JobConfig,
    out_dir: Path,
    token_counters: Mapping[str, Callable[[str], int]] | None = None,
    token_counter_notes: Mapping[str, str] | None = None,
    embed: Embedder | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> DatasetBuildResult:
    """Pull, clean, split and write a workload's datasets and manifest into ``out_dir``.

    ``token_counters`` maps candidate names to their tokenizer's counter (default: a
    conservative estimate) and ``token_counter_notes`` says where each came from or why a
    candidate has none (both land in the manifest); ``embed`` serves
    ``semantic_similarity`` ICL selection; ``on_stage`` is called with each stage's name as
    it ends (progress, benchmarks).

    Raises:
        DatasetError: fewer than ``min_total_records`` records survive cleaning; the
            message gives the count at each stage and the drops per reason.
    """
    split_cfg = config.data_split_config
    counters = dict(token_counters or {})
    llms = config.candidates_for(JobType.llm_job)
    counter_info = token_counter_summary(
        [c.name for c in llms], counted=counters, notes=token_counter_notes or {}
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    cleaner = RecordCleaner(
        parse_arguments=split_cfg.parse_function_arguments,
        context_budgets=[(c.context_length, counters.get(c.name, estimate_tokens)) for c in llms],
        near_duplicate_threshold=split_cfg.near_duplicate_threshold,
    )
    spill = SpillFile(out_dir / f".records-{secrets.token_hex(4)}.tmp")
    # The loop allocates millions of short-lived dicts while the kept records pile up;
    # the cyclic GC would rescan that growing heap again and again (measured: half the
    # time at 100k records). Nothing here forms cycles, so pause it for the stream.
    gc_was_enabled = gc.isenabled()
    try:
        records: list[CleanRecord] = []
        gc.disable()
        try:
            for item in log_store.iter_recent(
                client_id, workload_id, limit=split_cfg.limit, kind=LogKind.chat
            ):
                if not isinstance(item, ChatLog):
                    continue
                kept = cleaner.offer(item.timestamp, item.request, item.response)
                if kept is not None:
                    records.append(kept.record)
                    spill.add(kept.rows)
        finally:
            if gc_was_enabled:
                # The kept records live until the build ends and the split and ICL stages
                # allocate per record too: freeze what exists (moves it out of the
                # collector's generations, measured: a third of ICL's time at 100k records)
                # and unfreeze when done.
                gc.freeze()
                gc.enable()
        spill.finish()
        timings["stream"] = time.perf_counter() - started
        _notify(on_stage, "stream")
        if len(records) < split_cfg.min_total_records:
            raise DatasetError(
                f"{client_id}/{workload_id}: only {len(records)} clean records, "
                f"min_total_records is {split_cfg.min_total_records}: {cleaner.describe()}"
            )
        return _split_and_write(
            records=records,
            cleaner=cleaner,
            spill=spill,
            client_id=client_id,
            workload_id=workload_id,
            config=config,
            out_dir=out_dir,
            counters=counters,
            counter_info=counter_info,
            embed=embed,
            timings=timings,
            on_stage=on_stage,
        )
    finally:
        spill.close()
        if gc_was_enabled:
            gc.unfreeze()


def _split_and_write(
    *,
    records: list[CleanRecord],
    cleaner: RecordCleaner,
    spill: SpillFile,
    client_id: str,
    workload_id: str,
    config: JobConfig,
    out_dir: Path,
    counters: Mapping[str, TokenCounter],
    counter_info: Mapping[str, Mapping[str, str]],
    embed: Embedder | None,
    timings: dict[str, float],
    on_stage: Callable[[str], None] | None,
) -> DatasetBuildResult:
    split_cfg = config.data_split_config
    mark = time.perf_counter()
    seed_source = "config" if split_cfg.random_seed is not None else "random"
    seed = split_cfg.random_seed if split_cfg.random_seed is not None else secrets.randbelow(2**31)
    split = split_records(
        labels=[r.label for r in records],
        timestamps=[r.timestamp for r in records],
        eval_size=split_cfg.eval_size,
        val_ratio=split_cfg.val_ratio,
        seed=seed,
        strategy=split_cfg.split_strategy,
    )
    contamination = find_contamination(
        eval_items=[(i, records[i].prompt_key, records[i].user_text) for i in split.eval],
        train_items=((i, records[i].prompt_key, records[i].user_text) for i in split.train),
        near_threshold=split_cfg.contamination_threshold,
    )
    timings["split"] = time.perf_counter() - mark
    _notify(on_stage, "split")
    mark = time.perf_counter()
    files = _write_splits(spill=spill, split=split, out_dir=out_dir, n=len(records))
    timings["write"] = time.perf_counter() - mark
    _notify(on_stage, "write")
    mark = time.perf_counter()
    icl_summary, icl_files, candidate_files = _build_icl(
        records=records,
        split=split,
        spill=spill,
        config=config,
        out_dir=out_dir,
        token_counters=counters,
        embed=embed,
    )
    files.update(icl_files)
    timings["icl"] = time.perf_counter() - mark
    _notify(on_stage, "icl")
    manifest = build_manifest(
        client_id=client_id,
        workload_id=workload_id,
        records=records,
        counts=cleaner.counts,
        split=split,
        seed_source=seed_source,
        contamination=contamination,
        near_threshold=split_cfg.contamination_threshold,
        token_counters=counter_info,
        icl=icl_summary,
        files={
            name: {"records": f.records, "bytes": f.bytes, "sha256": f.sha256}
            for name, f in files.items()
        },
        config={
            "data_split_config": split_cfg.model_dump(mode="json"),
            "icl_config": config.icl_config.model_dump(mode="json"),
        },
    )
    manifest_path = out_dir / MANIFEST_FILE
    tmp = manifest_path.with_name(MANIFEST_FILE + ".partial")
    tmp.write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    os.replace(tmp, manifest_path)
    log.info(
        "datasets_built",
        client_id=client_id,
        workload_id=workload_id,
        kept=len(records),
        eval=len(split.eval),
        train=len(split.train),
        validation=len(split.validation),
    )
    return DatasetBuildResult(
        out_dir=out_dir,
        manifest=manifest,
        files=files,
        workload_type=workload_type(records),
        icl_files=candidate_files,
        stage_seconds=timings,
    )


def _write_splits(
    *, spill: SpillFile, split: SplitResult, out_dir: Path, n: int
) -> dict[str, DatasetFile]:
    # 0 = eval, 1 = train, 2 = validation. One pass in position order: runs of train or
    # validation rows are copied from the spill as blocks; eval rows are assembled one by one.
    where = np.full(n, -1, dtype=np.int8)
    where[list(split.eval)] = 0
    where[list(split.train)] = 1
    where[list(split.validation)] = 2
    change = np.flatnonzero(np.diff(where)) + 1
    starts = [0, *change.tolist()] if n else []
    stops = [*change.tolist(), n] if n else []
    writers = [
        JsonlWriter(out_dir / EVAL_FILE),
        JsonlWriter(out_dir / TRAIN_FILE),
        JsonlWriter(out_dir / VAL_FILE),
    ]
    try:
        for start, stop in zip(starts, stops, strict=True):
            target = int(where[start])
            if target == 0:
                for position in range(start, stop):
                    writers[0].write(spill.eval_line(position))
            elif target > 0:
                writers[target].write_rows(spill.sft_lines(start, stop), stop - start)
    except BaseException:
        for w in writers:
            w.abort()
        raise
    return {w.path.name: w.commit() for w in writers}
