"""Per-item results from the Evaluator's results archive (``GET …/download-results``, §8.5).

The archive ("a zip of generations/logs/metrics") has no documented inner layout, so this
parser reads what it recognises and ignores the rest; when nothing per-item is found the
caller keeps the platform's aggregate scores only and records :attr:`PerItem.reason`.

What is read, from every ``*.json`` and ``*.jsonl`` member (``__MACOSX/``, hidden files and
anything above :data:`MAX_MEMBER_BYTES` are skipped):

* **records**: a JSONL file's lines, a JSON list, or the list under one of
  :data:`RECORD_LISTS` (``samples``, ``results``, ``generations``, ``predictions``, ``data``,
  ``items``, ``rows``) of a JSON object.
* **LLM generations** (custom evaluations): a record with a ``sample`` object. The candidate's
  answer is ``sample.response.choices[0].message`` (the full chat response), else
  ``sample.output_text`` as the message content. The item's position is the record's
  ``index`` / ``item_index`` / ``idx`` / ``sample_id`` (an int), else its order in the file.
  A judge's per-item 1-10 rating is read from ``metrics.<metric>.scores.similarity.value``
  (generic workloads) or ``….scores.rating.value`` (the tool-calling ``correctness`` judge),
  also as a bare number, and kept as the judge reply ``"RATING: <n>"``;
  ``sample.latency_ms`` / ``sample.response.usage`` give latency and tokens when present.
* **retriever rankings** (retriever evaluations): a record with a query id (``query_id``,
  ``qid``, ``query-id``, ``_id``) and a ranked list (``retrieved``, ``ranking``, ``hits``,
  ``results``, ``doc_ids``, ``retrieved_ids``) of ids or of objects with ``corpus_id`` /
  ``doc_id`` / ``_id`` / ``id`` (ranked by ``score`` when every entry has one); or a
  pytrec_eval *run*, ``{query id: {doc id: score}}``, in a member whose name contains
  ``run``, ``retriev`` or ``ranking``.

Aggregate files (objects with ``tasks`` or ``groups``, e.g. ``results.json``) hold no items and
are skipped. When several members hold generations (one per task), the member whose path
names the planned task wins, else the first one found.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from flywheel.platforms.base import ItemPrediction

#: Members larger than this (uncompressed) are not read: a guard against zip bombs.
MAX_MEMBER_BYTES = 256 * 1024 * 1024
RECORD_LISTS = ("samples", "results", "generations", "predictions", "data", "items", "rows")
_INDEX_KEYS = ("index", "item_index", "idx", "sample_id")
_QUERY_KEYS = ("query_id", "qid", "query-id", "_id")
_RANKED_KEYS = ("retrieved", "ranking", "hits", "results", "doc_ids", "retrieved_ids")
_DOC_KEYS = ("corpus_id", "doc_id", "_id", "id")
_RUN_NAMES = ("run", "retriev", "ranking")
_JUDGE_SCORES = ("similarity", "rating")  # the judge metrics we send (1-10, payloads.py)


@dataclass
class PerItem:
    """What the archive held per item; ``reason`` says why it is empty when it is."""

    predictions: list[ItemPrediction] = field(default_factory=list)
    rankings: dict[str, list[str]] = field(default_factory=dict)
    source: str | None = None  # the archive member the items came from
    reason: str | None = None


def _records(value: Any) -> list[Mapping[str, Any]]:
    if isinstance(value, list):
        return [v for v in value if isinstance(v, Mapping)]
    if isinstance(value, Mapping):
        for key in RECORD_LISTS:
            if isinstance(value.get(key), list):
                return _records(value[key])
    return []


def _members(archive: zipfile.ZipFile) -> Iterator[tuple[str, Any]]:
    """``(name, parsed JSON)`` per readable member: a JSONL file parses to a list."""
    for info in archive.infolist():
        name = info.filename
        base = name.rsplit("/", 1)[-1]
        if info.is_dir() or name.startswith("__MACOSX/") or base.startswith("."):
            continue
        if not name.endswith((".json", ".jsonl")) or info.file_size > MAX_MEMBER_BYTES:
            continue
        try:
            text = archive.read(info).decode("utf-8")
            if name.endswith(".jsonl"):
                parsed: Any = [json.loads(line) for line in text.splitlines() if line.strip()]
            else:
                parsed = json.loads(text)
        except (ValueError, UnicodeDecodeError, zipfile.BadZipFile):
            continue  # one unreadable member does not spoil the others
        yield name, parsed


def _index(record: Mapping[str, Any], position: int) -> int:
    for key in _INDEX_KEYS:
        value = record.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return position


def _message(sample: Mapping[str, Any]) -> dict[str, Any] | None:
    response = sample.get("response")
    if isinstance(response, Mapping):
        choices = response.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], Mapping):
            message = choices[0].get("message")
            if isinstance(message, Mapping):
                return dict(message)
    text = sample.get("output_text")
    if isinstance(text, str):
        return {"role": "assistant", "content": text}
    return None


def _judge_rating(record: Mapping[str, Any]) -> str | None:
    metrics = record.get("metrics")
    if not isinstance(metrics, Mapping):
        return None
    for metric in metrics.values():
        scores = metric.get("scores") if isinstance(metric, Mapping) else None
        if not isinstance(scores, Mapping):
            continue
        for name in _JUDGE_SCORES:
            entry = scores.get(name)
            value = entry.get("value") if isinstance(entry, Mapping) else entry
            if isinstance(value, int | float) and not isinstance(value, bool):
                return f"RATING: {round(value)}"
    return None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _prediction(record: Mapping[str, Any], position: int) -> ItemPrediction:
    sample = record["sample"]
    raw_response = sample.get("response")
    response: Mapping[str, Any] = raw_response if isinstance(raw_response, Mapping) else {}
    raw_usage = response.get("usage")
    usage: Mapping[str, Any] = raw_usage if isinstance(raw_usage, Mapping) else {}
    latency = sample.get("latency_ms")
    error = sample.get("error") or record.get("error")
    return ItemPrediction(
        index=_index(record, position),
        response=_message(sample),
        latency_ms=float(latency) if isinstance(latency, int | float) else None,
        input_tokens=_int(usage.get("prompt_tokens")),
        output_tokens=_int(usage.get("completion_tokens")),
        error=str(error) if error else None,
        judge_reply=_judge_rating(record),
    )


def _doc_id(entry: object) -> str | None:
    if isinstance(entry, str | int) and not isinstance(entry, bool):
        return str(entry)
    if isinstance(entry, Mapping):
        for key in _DOC_KEYS:
            if entry.get(key) is not None:
                return str(entry[key])
    return None


def _ranked(entries: list[Any]) -> list[str]:
    scored = all(
        isinstance(e, Mapping) and isinstance(e.get("score"), int | float) for e in entries
    )
    if scored and entries:
        entries = sorted(entries, key=lambda e: -float(e["score"]))
    return [d for d in (_doc_id(e) for e in entries) if d is not None]


def _ranking(record: Mapping[str, Any]) -> tuple[str, list[str]] | None:
    query = next((record[k] for k in _QUERY_KEYS if record.get(k) is not None), None)
    ranked = next((record[k] for k in _RANKED_KEYS if isinstance(record.get(k), list)), None)
    if query is None or ranked is None:
        return None
    return str(query), _ranked(ranked)


def _run(value: Any) -> dict[str, list[str]]:
    """A pytrec_eval run ``{qid: {doc: score}}`` as rankings (empty when it is not one)."""
    if not isinstance(value, Mapping) or not value:
        return {}
    rankings: dict[str, list[str]] = {}
    for query, docs in value.items():
        if not isinstance(docs, Mapping) or not all(
            isinstance(s, int | float) and not isinstance(s, bool) for s in docs.values()
        ):
            return {}
        rankings[str(query)] = [str(d) for d, _ in sorted(docs.items(), key=lambda x: -x[1])]
    return rankings


def _is_aggregate(value: Any) -> bool:
    return isinstance(value, Mapping) and ("tasks" in value or "groups" in value)


def _pick(found: list[tuple[str, Any]], task: str | None) -> tuple[str, Any] | None:
    if not found:
        return None
    if task:
        for name, items in found:
            if task in name:
                return name, items
    return found[0]


def parse_archive(content: bytes, *, retriever: bool, task: str | None = None) -> PerItem:
    """Per-item generations (LLM) or per-query rankings (``retriever``) from a results zip."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(content))
    except zipfile.BadZipFile:
        return PerItem(reason="the results archive is not a zip file")
    generations: list[tuple[str, list[ItemPrediction]]] = []
    rankings: list[tuple[str, dict[str, list[str]]]] = []
    with archive:
        for name, parsed in _members(archive):
            if _is_aggregate(parsed):
                continue
            records = _records(parsed)
            if retriever:
                ranked = dict(r for r in map(_ranking, records) if r is not None)
                base = name.rsplit("/", 1)[-1].lower()
                if not ranked and any(key in base for key in _RUN_NAMES):
                    ranked = _run(parsed)
                if ranked:
                    rankings.append((name, ranked))
                continue
            predictions = [
                _prediction(record, position)
                for position, record in enumerate(records)
                if isinstance(record.get("sample"), Mapping)
            ]
            if predictions:
                generations.append((name, predictions))
    if retriever:
        picked_run = _pick(rankings, task)
        if picked_run is None:
            return PerItem(reason=_nothing("per-query retrieved ids", archive_names(content)))
        return PerItem(rankings=picked_run[1], source=picked_run[0])
    picked = _pick(generations, task)
    if picked is None:
        return PerItem(reason=_nothing("per-item generations", archive_names(content)))
    return PerItem(predictions=_unique(picked[1]), source=picked[0])


def _unique(predictions: Iterable[ItemPrediction]) -> list[ItemPrediction]:
    """One prediction per index (the first), in index order."""
    by_index: dict[int, ItemPrediction] = {}
    for prediction in predictions:
        by_index.setdefault(prediction.index, prediction)
    return [by_index[i] for i in sorted(by_index)]


def archive_names(content: bytes) -> list[str]:
    """The member names of a zip (empty when it is not one)."""
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            return archive.namelist()
    except zipfile.BadZipFile:
        return []


def _nothing(what: str, names: list[str]) -> str:
    listed = ", ".join(names[:8]) + (" …" if len(names) > 8 else "")
    return f"the results archive holds no {what} (members: {listed or 'none'})"
