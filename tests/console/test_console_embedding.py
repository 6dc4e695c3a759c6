"""An embedding job's detail page in headless Chromium: retrieval metrics with CIs and sample
sizes per candidate variant, the production retriever's reference row and its level on every
chart, the retrieval dataset counts and drop reasons, and no tool-calling, ICL or judge columns.

The job is produced by the real workflow (dataset build, scoring, finalize) on the fake
platform, then the page's numbers are checked against the API's JSON. Drives Debian's
``chromium`` with Playwright, like ``test_console_e2e.py``; the screenshot goes to
``test-artifacts/console/``.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from playwright.sync_api import sync_playwright

from flywheel.api.app import create_app
from flywheel.domain.jobs import JobStatus, JobType, Role
from flywheel.domain.logs import RetrievalLog, RetrievedPassage
from flywheel.services.auth import create_key
from flywheel.services.workflow_port import DeferredLauncher
from flywheel.stores.base import LogStore, StateStore
from flywheel.workflow.steps import StepRunner
from tests.api.conftest import make_settings
from tests.workflow.fake_platform import FakePlatform
from tests.workflow.support import (
    create_job,
    drive,
    embedding_config,
    make_services,
    retrieval_logs,
)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
TIMEOUT_MS = 15_000
METRICS = ("recall@1", "recall@5", "recall@10", "ndcg@10", "mrr@10")


def _traffic() -> list[RetrievalLog]:
    """40 answerable retrievals (every 4th logged without ranks or scores) and 3 unusable."""
    logs = []
    for i, log in enumerate(retrieval_logs(40)):
        if i % 4 == 0:
            log = log.model_copy(
                update={
                    "retrieved": [
                        RetrievedPassage(doc_id=p.doc_id, text=p.text) for p in log.retrieved
                    ]
                }
            )
        logs.append(log)
    for i in range(3):  # nothing was used: dropped as no_positives
        logs.append(
            retrieval_logs(1)[0].model_copy(
                update={"query": f"unanswered question {i}", "used_doc_ids": []}
            )
        )
    return logs


@dataclass
class Stack:
    base: str
    job_id: str
    admin: str

    def get(self, path: str) -> Any:
        response = httpx.get(
            self.base + path, headers={"Authorization": f"Bearer {self.admin}"}, timeout=10
        )
        response.raise_for_status()
        return response.json()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _finished_embedding_job(state: StateStore, logs: LogStore, work_dir: Path) -> str:
    """Run a whole embedding_job through the workflow on the fake platform."""
    logs.write(_traffic())
    work_dir.mkdir()
    platform = FakePlatform(work_dir / "fake_platform.db")
    # 60% of eval queries find their passage first; the rest find it third.
    platform.set_script(accuracy={"embedder": 0.6})
    runner = StepRunner(make_services(state=state, logs=logs, platform=platform, data_dir=work_dir))
    job = create_job(state, embedding_config(["embedder"]), job_type=JobType.embedding_job)
    done = drive(runner, job.id)
    assert done.status is JobStatus.completed, done.error
    return str(done.id)


@pytest.fixture
def stack(tmp_path: Path, stores: tuple[StateStore, LogStore]) -> Iterator[Stack]:
    state, logs = stores
    job_id = _finished_embedding_job(state, logs, tmp_path / "workflow")
    admin = create_key(state, role=Role.admin, name="embedding e2e")[0]
    app = create_app(
        make_settings(tmp_path), state_store=state, log_store=logs, workflow=DeferredLauncher()
    )
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", ws="none", lifespan="on"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield Stack(base=f"http://127.0.0.1:{port}", job_id=job_id, admin=admin)
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def page(stack: Stack) -> Iterator[Any]:
    assert Path(CHROMIUM).exists(), (
        f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium; "
        "scripts/test does it)"
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport={"width": 1366, "height": 800})
        pg = context.new_page()
        pg.set_default_timeout(TIMEOUT_MS)
        errors: list[str] = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        pg.on(
            "console",
            lambda msg: (
                errors.append(msg.text)
                if msg.type == "error" and "Failed to load resource" not in msg.text
                else None
            ),
        )
        yield pg
        context.close()
        browser.close()
        assert errors == [], errors


def _fmt(value: float) -> str:
    return f"{value:.3f}"


def _check_row(row: Any, scores: dict[str, Any], n: int) -> None:
    for metric in METRICS:
        cell = row.locator(f'td[data-metric="{metric}"]')
        score = scores[metric]
        assert cell.locator(".v").inner_text() == _fmt(score["value"]), metric
        ci = f"{_fmt(score['ci_low'])} – {_fmt(score['ci_high'])}"
        assert cell.locator(".ci").inner_text() == ci, metric
    assert row.locator('td[data-col="n"]').inner_text() == str(n)


def test_embedding_job_detail_matches_the_api(stack: Stack, page: Any) -> None:
    page.goto(stack.base + "/")
    page.get_by_label("API key").fill(stack.admin)
    page.get_by_role("button", name="Log in").click()
    page.locator("#nav").wait_for(state="visible")
    page.goto(f"{stack.base}/#/jobs/{stack.job_id}")
    page.locator("#retrieval-table").wait_for()
    page.locator("#job-status").filter(has_text="completed").wait_for()
    page.screenshot(path=str(ARTIFACTS / "embedding-job-detail.png"), full_page=True)
    job = stack.get(f"/api/jobs/{stack.job_id}")

    # Datasets: the retrieval counts and drop reasons, not the chat-log stages.
    stats = job["dataset_stats"]
    for key in ("logs_read", "usable_logs", "unique_queries", "eval_queries", "corpus_docs"):
        assert page.locator(f'td[data-count="{key}"]').inner_text() == str(stats[key]), key
    assert stats["drop_reasons"]["no_positives"] == 3
    drops = page.locator("#drop-reasons")
    assert drops.locator('td[data-reason="no_positives"]').inner_text() == "3"
    assert "no passage was used or clicked" in drops.inner_text()
    assert page.locator("#stage-counts").count() == 0

    # Scores table: every candidate variant, then the reference row, equal to the API.
    table = page.locator("#retrieval-table")
    candidate = job["candidates"][0]
    variants = {e["eval_type"]: e for e in candidate["evaluations"]}
    assert set(variants) == {"base", "customized"}
    for variant, evaluation in variants.items():
        scores = evaluation["scores"]
        row = table.locator(f'tr[data-row="{candidate["name"]}/{variant}"]')
        _check_row(row, scores, scores["ndcg@10"]["n"])
    # A variant with differing per-query values has a real interval.
    base_mrr = variants["base"]["scores"]["mrr@10"]
    assert base_mrr["ci_low"] < base_mrr["value"] < base_mrr["ci_high"]

    reference = job["reference"]
    assert reference is not None
    assert job["reference_note"] is None
    # Every 4th log was unranked, so the row covers only part of the eval set.
    assert 0 < reference["queries"] < reference["eval_queries"] == stats["eval_queries"]
    ref_row = table.locator('tr[data-row="reference"]')
    assert "production retriever" in ref_row.locator("th").inner_text()
    _check_row(ref_row, reference["metrics"], reference["queries"])
    coverage = page.locator("#reference-coverage").inner_text()
    assert f"{reference['queries']} of {reference['eval_queries']} eval queries" in coverage
    # Ranked and recommended: candidates only.
    ranked = page.locator("#ranked tbody th").all_inner_texts()
    assert sorted(ranked) == sorted(r["name"] for r in job["recommendation"]["ranked"])
    assert all("production" not in name for name in ranked)

    # Charts: one per metric, bars at the variants' values, the dashed line at the reference.
    card = page.locator(f'section.candidate[data-candidate="{candidate["name"]}"]')
    for metric in METRICS:
        figure = card.locator(f'figure[data-metric="{metric}"]')
        bars = figure.locator("rect.bar").evaluate_all(
            "els => els.map(e => Number(e.getAttribute('data-value')))"
        )
        assert bars == pytest.approx(
            [variants[v]["scores"][metric]["value"] for v in ("base", "customized")]
        )
        line = figure.locator("line.reference-production")
        assert float(line.get_attribute("data-value")) == pytest.approx(
            reference["metrics"][metric]["value"]
        )
        assert figure.locator("text.ref-label").text_content().startswith("production retriever")
    # Per-candidate score rows carry the sample sizes too.
    for row in card.locator("tr.score-row").all():
        variant, metric = row.get_attribute("data-variant"), row.get_attribute("data-metric")
        score = variants[variant]["scores"][metric]
        assert row.locator('td[data-col="value"]').inner_text() == _fmt(score["value"])
        assert row.locator('td[data-col="n"]').inner_text() == str(score["n"])

    # No tool-calling, ICL, judge, cost or parity-gate columns on an embedding job.
    text = page.locator("main").inner_text()
    for absent in ("Tool name", "ICL", "Judge", "Cost per 1k", "Parity gate", "LoRA"):
        assert absent not in text, absent
    assert "Customized (fine-tuned)" in text
