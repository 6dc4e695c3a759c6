"""End to end in headless Chromium: log in, create a job through the form, watch it finish,
check the chart and tables against the API, promote through the UI and read the model back.

Drives Debian's ``chromium`` (``/usr/bin/chromium``) with Playwright; no browser download.
Screenshots of every page go to ``test-artifacts/console/``.
"""

from __future__ import annotations

import re
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

from flywheel.api.app import create_app
from flywheel.domain.jobs import JobId, Role
from flywheel.services.auth import create_key
from flywheel.services.workflow_port import DeferredLauncher
from flywheel.stores.base import LogStore, StateStore
from tests.api.conftest import make_settings
from tests.console.conftest import CLIENT, WORKLOAD
from tests.console.fixtures import finish_job, start_job

playwright_api = pytest.importorskip("playwright.sync_api")

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

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Debian chromium is not installed (scripts/test does it)"
)


@dataclass
class Stack:
    base: str
    state: StateStore
    admin: str
    viewer: str

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


@pytest.fixture
def stack(tmp_path: Path, stores: tuple[StateStore, LogStore]) -> Iterator[Stack]:
    state, logs = stores
    admin = create_key(state, role=Role.admin, name="e2e admin")[0]
    viewer = create_key(state, role=Role.viewer, name="e2e viewer")[0]
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
    yield Stack(base=f"http://127.0.0.1:{port}", state=state, admin=admin, viewer=viewer)
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def page(stack: Stack) -> Iterator[Any]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(
            viewport={"width": 1366, "height": 800}, accept_downloads=True
        )
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


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def nav(page: Any, name: str) -> Any:
    return page.get_by_role("navigation", name="Main").get_by_role("link", name=name, exact=True)


def log_in(page: Any, stack: Stack, key: str) -> None:
    page.goto(stack.base + "/")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Log in").click()
    page.locator("#nav").wait_for(state="visible")


def test_console_end_to_end(stack: Stack, page: Any) -> None:
    started = time.monotonic()
    # -- log in ---------------------------------------------------------------------
    page.goto(stack.base + "/")
    page.get_by_label("API key").fill("fw_wrong")
    page.get_by_role("button", name="Log in").click()
    page.locator("#login-error").filter(has_text="unknown or revoked").wait_for()
    shot(page, "01-login")
    page.get_by_label("API key").fill(stack.admin)
    page.get_by_role("button", name="Log in").click()
    page.locator("#jobs-table").wait_for()
    assert page.locator("#who-role").inner_text() == "admin"

    # -- new job: the API's validation message lands next to the field -------------
    page.get_by_role("link", name="New job").click()
    workload = page.get_by_label("Client and workload")
    workload.locator("option").first.wait_for(state="attached")
    options = workload.locator("option").all_inner_texts()
    assert any(f"{CLIENT} / {WORKLOAD} — 64 chat" in o for o in options), options
    workload.select_option(label=next(o for o in options if o.startswith(f"{CLIENT} / ")))
    page.get_by_label("Validation ratio").fill("2")
    page.get_by_role("button", name="Create job").click()
    error = page.locator("#split-val_ratio-error")
    error.filter(has_text=re.compile("less than 1")).wait_for()
    assert page.get_by_label("Validation ratio").get_attribute("aria-invalid") == "true"
    shot(page, "02-new-job-validation")
    page.get_by_label("Validation ratio").fill("")
    page.get_by_label("Eval size").fill("20")
    page.get_by_role("button", name="Create job").click()
    page.wait_for_url(re.compile(r"#/jobs/job_"))
    job_id = page.url.split("#/jobs/")[1]
    page.locator("#job-status").filter(has_text="pending").wait_for()
    api_job = stack.get(f"/api/jobs/{job_id}")
    assert api_job["config"]["data_split_config"]["eval_size"] == 20

    # -- watch it run and finish (the fake platform moves it) ----------------------
    start_job(stack.state, job_id)
    page.locator("#job-status").filter(has_text="running").wait_for()
    shot(page, "03-job-running")
    finish_job(stack.state, JobId(job_id))
    page.locator("#job-status").filter(has_text="completed").wait_for()
    page.locator("#promote-form").wait_for()
    shot(page, "04-job-detail-completed")

    # -- chart and tables equal the API ----------------------------------------------
    job = stack.get(f"/api/jobs/{job_id}")
    stages = job["dataset_stats"]["stages"]
    for stage in ("pulled", "valid", "unique", "kept"):
        assert page.locator(f'td[data-stage="{stage}"]').inner_text() == str(stages[stage])
    candidate = job["candidates"][0]
    card = page.locator(f'section.candidate[data-candidate="{candidate["name"]}"]')
    for metric in ("function_name_accuracy", "function_name_and_args_accuracy"):
        figure = card.locator(f'figure[data-metric="{metric}"]')
        bars = [
            float(v)
            for v in figure.locator("rect.bar").evaluate_all(
                "els => els.map(e => e.getAttribute('data-value'))"
            )
        ]
        labels = figure.locator("[data-testid=chart-value]").all_text_contents()
        assert figure.locator("line.reference").count() == 1
        expected = [e["scores"][metric] for e in candidate["evaluations"]]
        assert bars == [s["value"] for s in expected]
        assert labels == [f"{s['value']:.3f}" for s in expected]
        for evaluation in candidate["evaluations"]:
            score = evaluation["scores"][metric]
            row = card.locator(
                f'tr.score-row[data-variant="{evaluation["eval_type"]}"][data-metric="{metric}"]'
            )
            assert row.locator('[data-col="value"]').inner_text() == f"{score['value']:.3f}"
            assert row.locator('[data-col="ci"]').inner_text() == (
                f"{score['ci_low']:.3f} – {score['ci_high']:.3f}"
            )
            assert row.locator('[data-col="n"]').inner_text() == str(score["n"])
    card.locator('figure[data-metric="function_name_accuracy"]').screenshot(
        path=str(ARTIFACTS / "04a-score-chart.png")
    )
    card.locator("figure.loss-figure").screenshot(path=str(ARTIFACTS / "04b-loss-chart.png"))
    loss = candidate["customization"]["details"]["train_loss"]
    assert card.locator("polyline.loss-train").get_attribute("data-points") == str(len(loss))
    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").click()
    assert download.value.suggested_filename == f"{job_id}-results.csv"
    csv_text = Path(download.value.path()).read_text()
    assert csv_text.splitlines()[0].startswith("job_id,client_id,workload_id,candidate,variant")

    # -- promote through the UI; read it back where applications do -------------------
    page.get_by_label("Variant").select_option("customized")
    page.get_by_label("Note (why this model)").fill("parity on tool calls, a fraction of the cost")
    page.get_by_role("button", name="Promote", exact=True).click()
    page.locator("#confirm").get_by_role("button", name="Promote").click()
    page.locator("#promote-result").filter(has_text="Promoted").wait_for()
    model = stack.get(f"/api/workloads/{CLIENT}/{WORKLOAD}/model")
    assert model["job_id"] == job_id
    assert model["variant"] == "customized"
    assert model["model"] == candidate["customization"]["details"]["output_model"]
    assert model["note"] == "parity on tool calls, a fraction of the cost"
    shot(page, "05-job-promoted")

    page.get_by_role("link", name="See the workload").click()
    page.locator("#current-model-name").filter(has_text=model["model"]).wait_for()
    shot(page, "06-workload")
    nav(page, "Workloads").click()
    page.locator("#workloads-table").get_by_text(f"{model['model']} (customized)").wait_for()
    shot(page, "07-workloads")
    nav(page, "Jobs").click()
    page.locator(f'tr[data-job-id="{job_id}"]').get_by_text("completed").wait_for()
    shot(page, "08-jobs")

    # -- configurations: field errors from the API, then a saved version ------------
    nav(page, "Configurations").click()
    page.get_by_role("link", name="New configuration").click()
    page.get_by_label("Name", exact=True).fill("small-models")
    page.get_by_label("Description").fill("bigger eval set")
    page.get_by_label("Data split").fill('{"eval_size": 0}')
    page.get_by_label("Training").fill("{not json")
    page.get_by_role("button", name="Create configuration").click()
    page.locator("#cfg-training_config-error").filter(has_text="not valid JSON").wait_for()
    page.get_by_label("Training").fill('{"epochs": 3}')
    page.get_by_role("button", name="Create configuration").click()
    page.locator("#cfg-data_split_config-error").filter(has_text="eval_size").wait_for()
    shot(page, "09-config-validation")
    page.get_by_label("Data split").fill('{"eval_size": 30, "min_total_records": 60}')
    page.get_by_role("button", name="Create configuration").click()
    page.wait_for_url(re.compile(r"#/configs/small-models$"))
    page.get_by_label("Description").fill("bigger eval set, 3 epochs")
    page.get_by_role("button", name="Save as new version").click()
    page.locator("#config-versions tbody tr").nth(1).wait_for()
    assert stack.get("/api/configs/small-models")["version"] == 2
    assert stack.get("/api/configs/small-models")["body"]["training_config"] == {"epochs": 3}
    shot(page, "10-config-detail")
    nav(page, "Configurations").click()
    page.locator("#configs-table").get_by_role("link", name="small-models").wait_for()
    shot(page, "11-configs")

    # -- cancel and delete, each after a confirmation --------------------------------
    other = httpx.post(
        stack.base + "/api/jobs",
        json={"client_id": CLIENT, "workload_id": WORKLOAD},
        headers={"Authorization": f"Bearer {stack.admin}"},
        timeout=10,
    ).json()["id"]
    page.goto(f"{stack.base}/#/jobs/{other}")
    page.get_by_role("button", name="Cancel job").click()
    dialog = page.locator("#confirm")
    dialog.wait_for(state="visible")
    shot(page, "13-confirm-cancel")
    dialog.get_by_role("button", name="Keep it").click()
    assert stack.get(f"/api/jobs/{other}")["status"] == "pending"
    page.get_by_role("button", name="Cancel job").click()
    dialog.get_by_role("button", name="Cancel job").click()
    page.locator("#job-status").filter(has_text="cancelled").wait_for()
    page.get_by_role("button", name="Delete job").click()
    dialog.get_by_role("button", name="Delete job").click()
    page.wait_for_url(re.compile(r"#/jobs$"))
    gone = httpx.get(
        f"{stack.base}/api/jobs/{other}",
        headers={"Authorization": f"Bearer {stack.admin}"},
        timeout=10,
    )
    assert gone.status_code == 404

    # -- a viewer is not offered what it cannot do ---------------------------------
    page.get_by_role("button", name="Log out").click()
    log_in(page, stack, stack.viewer)
    assert page.locator("#new-job").count() == 0
    page.goto(f"{stack.base}/#/jobs/{job_id}")
    page.locator("#job-status").filter(has_text="completed").wait_for()
    for action in ("#promote-form", "#delete-job", "#cancel-job"):
        assert page.locator(action).count() == 0, action
    page.goto(f"{stack.base}/#/workloads/{CLIENT}/{WORKLOAD}")
    page.locator("#current-model-name").wait_for()
    assert page.locator("#rollback").count() == 0
    shot(page, "12-viewer-job")
    assert time.monotonic() - started < 60
