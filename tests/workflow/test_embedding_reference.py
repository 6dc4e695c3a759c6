"""A full embedding_job ends with the production retriever's reference row, and every view of
the job's results (API detail, CSV, ``flywheel jobs show``) carries it."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flywheel.api.app import create_app
from flywheel.cli import jobs as jobs_cli
from flywheel.cli.api_client import ApiClient
from flywheel.domain.jobs import Job, JobStatus, JobType, Role
from flywheel.domain.logs import RetrievalLog, RetrievedPassage
from flywheel.services.auth import create_key
from flywheel.services.workflow_port import DeferredLauncher
from flywheel.stores.base import LogStore, StateStore
from flywheel.stores.logs_sqlite import SqliteLogStore
from flywheel.workflow.steps import StepRunner
from tests.api.conftest import TestClient, make_settings
from tests.workflow.fake_platform import FakePlatform
from tests.workflow.support import (
    create_job,
    drive,
    embedding_config,
    make_services,
    retrieval_logs,
)


def _api(tmp_path: Path, state: StateStore, logs: LogStore) -> Iterator[TestClient]:
    key = create_key(state, role=Role.viewer)[0]
    app = create_app(
        make_settings(tmp_path / "api"),
        state_store=state,
        log_store=logs,
        workflow=DeferredLauncher(),
    )
    with TestClient(app) as client:
        client.headers.update({"Authorization": f"Bearer {key}"})
        yield client


@pytest.fixture
def http(tmp_path: Path, state: StateStore, logs: LogStore) -> Iterator[TestClient]:
    yield from _api(tmp_path, state, logs)


def _run_embedding_job(runner: StepRunner, state: StateStore) -> Job:
    job = create_job(state, embedding_config(["embedder"]), job_type=JobType.embedding_job)
    done = drive(runner, job.id)
    assert done.status is JobStatus.completed, done.error
    return done


def test_reference_row_when_logs_carry_retriever_ranks(
    runner: StepRunner, state: StateStore, http: TestClient
) -> None:
    done = _run_embedding_job(runner, state)
    api_client = ApiClient(http)
    assert done.recommendation is not None
    reference = done.recommendation["reference"]
    assert "reference_note" not in done.recommendation
    stats = done.dataset_stats or {}
    # Every synthetic log ranks every passage, so the row covers every eval query.
    assert stats["reference_run_queries"] == stats["eval_queries"] == reference["queries"]
    assert reference["eval_queries"] == stats["eval_queries"]
    assert reference["excluded_queries"] == 0
    assert reference["name"] == "production retriever"
    # The production retriever put each used passage third (support.retrieval_logs):
    # recall@1 = 0, recall@5 = 1, MRR@10 = 1/3, nDCG@10 = 1/log2(4) = 0.5, on every query.
    metrics = reference["metrics"]
    assert metrics["recall@1"]["value"] == 0.0
    assert metrics["recall@5"]["value"] == 1.0
    assert metrics["recall@10"]["value"] == 1.0
    assert metrics["mrr@10"]["value"] == pytest.approx(1 / 3)
    assert metrics["ndcg@10"]["value"] == pytest.approx(1 / math.log2(4))
    assert {s["n"] for s in metrics.values()} == {stats["eval_queries"]}
    # A yardstick, never a candidate: not ranked, not recommended.
    ranked = {r["name"] for r in done.recommendation["ranked"]}
    assert ranked == {"embedder/base", "embedder/customized"}
    assert done.recommendation["best"] in ranked

    # API detail: typed, and once (lifted out of the recommendation).
    detail = api_client.request("GET", f"/api/jobs/{done.id}")
    assert detail["reference"]["metrics"]["mrr@10"] == metrics["mrr@10"]
    assert detail["reference"]["queries"] == reference["queries"]
    assert detail["reference_note"] is None
    assert "reference" not in detail["recommendation"]
    assert detail["recommendation"]["best"] == done.recommendation["best"]

    # CSV: the candidates' rows, then the reference's, marked as such.
    text = http.get(f"/api/jobs/{done.id}/results.csv").text
    rows = list(csv.DictReader(io.StringIO(text)))
    ref_rows = {r["metric"]: r for r in rows if r["variant"] == "reference"}
    assert set(ref_rows) == set(metrics)
    assert {r["candidate"] for r in ref_rows.values()} == {"production retriever"}
    assert float(ref_rows["mrr@10"]["value"]) == pytest.approx(1 / 3)
    assert int(ref_rows["ndcg@10"]["n"]) == reference["queries"]
    assert {r["candidate"] for r in rows if r["variant"] != "reference"} == {"embedder"}

    # CLI.
    shown = CliRunner().invoke(jobs_cli.app, ["show", done.id], obj=api_client)
    assert shown.exit_code == 0, shown.output
    assert "reference: production retriever" in shown.output
    assert f"{reference['queries']}/{reference['eval_queries']} eval queries" in shown.output
    assert "mrr@10" in shown.output
    assert "0.333" in shown.output


def _unranked(log: RetrievalLog) -> RetrievalLog:
    """The same retrieval without ranks or scores: list order alone is not trusted."""
    passages = [RetrievedPassage(doc_id=p.doc_id, text=p.text) for p in log.retrieved]
    return log.model_copy(update={"retrieved": passages})


def test_no_reference_row_when_logs_carry_no_retriever_scores(
    tmp_path: Path, data_dir: Path, state: StateStore, platform: FakePlatform
) -> None:
    logs = SqliteLogStore.from_url(f"sqlite:///{data_dir / 'unranked-logs.db'}")
    try:
        logs.write([_unranked(log) for log in retrieval_logs(40)])
        runner = StepRunner(
            make_services(state=state, logs=logs, platform=platform, data_dir=data_dir)
        )
        done = _run_embedding_job(runner, state)
        assert done.recommendation is not None
        assert done.recommendation["reference"] is None
        note = done.recommendation["reference_note"]
        assert "carry no retriever ranks or scores" in note
        assert (done.dataset_stats or {})["reference_run_queries"] == 0
        assert done.recommendation["best"] in {"embedder/base", "embedder/customized"}
        for http in _api(tmp_path, state, logs):
            client = ApiClient(http)
            detail = client.request("GET", f"/api/jobs/{done.id}")
            assert detail["reference"] is None
            assert detail["reference_note"] == note
            text = http.get(f"/api/jobs/{done.id}/results.csv").text
            assert "production retriever" not in text
            shown = CliRunner().invoke(jobs_cli.app, ["show", done.id], obj=client)
            assert shown.exit_code == 0, shown.output
            assert "reference: no production-retriever row" in shown.output
    finally:
        logs.close()
