"""The fake Evaluator's ``download-results`` archive (§8.5: "zip of generations/logs/metrics").

Layout (one plausible reading of the undocumented archive; the client's parser is tolerant):

* ``results.json``: the aggregate result, as ``GET …/results`` answers it;
* ``logs/evaluation.log``: a few lines of text;
* custom (LLM) jobs: ``results/<task>/samples.jsonl``, one record per eval row:
  ``{"index", "item": <eval row>, "sample": {"output_text", "response": <chat completion>},
  "metrics": {<metric>: {"scores": {<score>: {"value"}}}}}``;
* retriever jobs: ``results/<task>/run.json``, a pytrec_eval run ``{query id: {doc id: score}}``.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from typing import Any

from tests.fake_nmp.state import FakeNMP


def _repo_file(state: FakeNMP, files_url: str, path: str | None = None) -> bytes | None:
    """A Data Store file by ``hf://datasets/ns/name[/path]`` (``path`` appended if given)."""
    rest = files_url.removeprefix("hf://datasets/").strip("/")
    parts = rest.split("/")
    repo, inner = "/".join(parts[:2]), "/".join(parts[2:])
    if path is not None:
        inner = f"{inner}/{path}".strip("/")
    return state.repos.get(repo, {}).get(inner)


def _jsonl(raw: bytes | None) -> list[dict[str, Any]]:
    if raw is None:
        return []
    return [json.loads(line) for line in raw.decode().splitlines() if line.strip()]


def _reference(row: dict[str, Any]) -> dict[str, Any]:
    choices = (row.get("response") or {}).get("choices") or [{}]
    return dict(choices[0].get("message") or {"role": "assistant", "content": ""})


def _samples(state: FakeNMP, task: dict[str, Any]) -> list[dict[str, Any]]:
    rows = _jsonl(_repo_file(state, str((task.get("dataset") or {}).get("files_url", ""))))
    records = []
    for index, row in enumerate(rows):
        message = state.answer(index, row) if state.answer else _reference(row)
        response = {
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25},
        }
        metrics: dict[str, Any] = {}
        for name, metric in (task.get("metrics") or {}).items():
            if metric.get("type") == "tool-calling":
                right = float(message.get("tool_calls") == _reference(row).get("tool_calls"))
                scores = {"function_name_accuracy": right, "function_name_and_args_accuracy": right}
            else:
                keys = (metric.get("params") or {}).get("scores") or {"score": {}}
                scores = {k: state.scores.get(k, state.default_score) for k in keys}
            metrics[name] = {"scores": {k: {"value": v} for k, v in scores.items()}}
        records.append(
            {
                "index": index,
                "item": row,
                "sample": {"output_text": message.get("content") or "", "response": response},
                "metrics": metrics,
            }
        )
    return records


def _run(state: FakeNMP, task: dict[str, Any]) -> dict[str, dict[str, float]]:
    files_url = str((task.get("dataset") or {}).get("files_url", ""))
    corpus = [str(d["_id"]) for d in _jsonl(_repo_file(state, files_url, "corpus.jsonl"))]
    queries = [str(q["_id"]) for q in _jsonl(_repo_file(state, files_url, "queries.jsonl"))]
    qrels: dict[str, set[str]] = {}
    raw = _repo_file(state, files_url, "qrels/test.tsv") or b""
    for row in csv.reader(io.StringIO(raw.decode()), delimiter="\t"):
        if len(row) >= 3 and row[0] != "query-id" and float(row[2]) > 0:
            qrels.setdefault(row[0], set()).add(row[1])
    run: dict[str, dict[str, float]] = {}
    for query in queries:
        relevant = qrels.get(query, set())
        if state.rank is not None:
            ranked = state.rank(query, corpus, relevant)
        else:
            ranked = sorted(corpus, key=lambda d: (d not in relevant, d))
        run[query] = {doc: round(1.0 - i / (len(ranked) + 1), 4) for i, doc in enumerate(ranked)}
    return run


def build_archive(state: FakeNMP, job: dict[str, Any]) -> bytes:
    """The zip ``GET /v1/evaluation/jobs/{id}/download-results`` returns for ``job``."""
    if state.archive_override is not None:
        return state.archive_override
    config = job["config"]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("results.json", json.dumps(job.get("results") or {}))
        archive.writestr("logs/evaluation.log", f"evaluation {job['id']} completed\n")
        for name, task in (config.get("tasks") or {}).items():
            if config.get("type") == "retriever":
                archive.writestr(f"results/{name}/run.json", json.dumps(_run(state, task)))
            else:
                lines = "".join(json.dumps(r) + "\n" for r in _samples(state, task))
                archive.writestr(f"results/{name}/samples.jsonl", lines)
    return buffer.getvalue()
