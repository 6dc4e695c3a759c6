"""End to end in headless Chromium on the real stack: log in, create a job through the form,
watch the real workflow run it, check the chart and tables against the API, promote through
the UI (and lose a race to another operator, politely), read the model back where
applications do, see the failed webhook, roll back, and save a screenshot of every page.

The server is ``flywheel serve`` (the API with its embedded worker) as operators run it;
only the model platform is faked (``FLYWHEEL_PLATFORM=tests.workflow.fake_platform:from_env``:
scripted deployments, evaluations made to a scripted accuracy, customizations). No job
state is written by the test: everything moves because the workflow moved it. The fake's
``hold`` gate parks the worker at its dataset build so that "running" is seen for sure.

Drives Debian's ``chromium`` (``/usr/bin/chromium``) with Playwright; no browser download.
Screenshots go to ``<pytest tmp dir>/screenshots/`` (pytest keeps the last three runs under
``/tmp/pytest-of-$USER/``); set ``FLYWHEEL_TEST_ARTIFACTS`` to a directory CI keeps to get a
copy under ``$FLYWHEEL_TEST_ARTIFACTS/console/``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from flywheel.domain.jobs import Role
from flywheel.services.auth import create_key
from flywheel.stores.registry import open_state_store
from tests.console.conftest import CLIENT, WORKLOAD, tool_log
from tests.console.fixtures import CANDIDATE, write_job_config
from tests.e2e.conftest import worker_env
from tests.support.webhook_receiver import Receiver, serve_receiver
from tests.workflow.fake_platform import ENV_DB, FakePlatform

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
TIMEOUT_MS = 15_000
RUN_TIMEOUT_MS = 60_000  # a whole job on the fake platform, on a busy 2-core machine
ACCURACY = 0.75  # share of eval items the fake candidate answers like the reference

pytestmark = [
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason="Debian chromium is not installed (scripts/test does it)",
    ),
    pytest.mark.timeout(120),
]


@dataclass
class Stack:
    """A running ``flywheel serve`` and what the test needs to talk to it."""

    base: str
    admin: str
    viewer: str
    platform: FakePlatform
    hook: Receiver
    screenshots: Path

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin}"}

    def get(self, path: str) -> Any:
        response = httpx.get(self.base + path, headers=self._headers(), timeout=10)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body: Any) -> httpx.Response:
        return httpx.post(self.base + path, json=body, headers=self._headers(), timeout=30)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def hook() -> Iterator[Receiver]:
    """The promotion webhook's receiver: it refuses every call (HTTP 410), recording them."""
    with serve_receiver("/model-changed", default=410) as recv:
        yield recv


@pytest.fixture
def stack(tmp_path: Path, hook: Receiver) -> Iterator[Stack]:
    """``flywheel serve`` on fresh SQLite stores, with an admin and a viewer key and logs."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    platform = FakePlatform(tmp_path / "fake_platform.db")
    platform.set_script(accuracy={CANDIDATE: ACCURACY}, hold={"build_datasets": True})
    state = open_state_store(f"sqlite:///{(data_dir / 'state.db').resolve()}")
    try:
        admin = create_key(state, role=Role.admin, name="e2e admin")[0]
        viewer = create_key(state, role=Role.viewer, name="e2e viewer")[0]
    finally:
        state.close()
    port = _free_port()
    env = worker_env(
        data_dir,
        write_job_config(tmp_path / "config.yaml"),
        FLYWHEEL_AUTH_ENABLED="true",
        FLYWHEEL_PLATFORM="tests.workflow.fake_platform:from_env",
        FLYWHEEL_PROMOTION_WEBHOOK_URL=hook.url,
        **{ENV_DB: str(platform.db)},
    )
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-c", "from flywheel.cli import main; main()", "serve",
             "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    screenshots = tmp_path / "screenshots"
    screenshots.mkdir()
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(base + "/api/health", timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.2)
        stack = Stack(base, admin, viewer, platform, hook, screenshots)
        logs = [tool_log(CLIENT, WORKLOAD, n) for n in range(64)]
        logs += [tool_log("acme", "router", n) for n in range(5)]
        loaded = stack.post("/api/logs", [r.model_dump(mode="json") for r in logs])
        assert loaded.status_code == 200, loaded.text
        yield stack
    finally:
        platform.set_script(hold={})  # never leave the worker parked at the gate
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            raise
    kept = os.environ.get("FLYWHEEL_TEST_ARTIFACTS")
    if kept:
        shutil.copytree(screenshots, Path(kept) / "console", dirs_exist_ok=True)


@pytest.fixture
def page(stack: Stack) -> Iterator[Any]:
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


def shot(page: Any, stack: Stack, name: str) -> None:
    page.screenshot(path=str(stack.screenshots / f"{name}.png"), full_page=True)


def nav(page: Any, name: str) -> Any:
    return page.get_by_role("navigation", name="Main").get_by_role("link", name=name, exact=True)


def log_in(page: Any, stack: Stack, key: str) -> None:
    page.goto(stack.base + "/")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Log in").click()
    page.locator("#nav").wait_for(state="visible")


def release_the_worker(stack: Stack) -> None:
    """Open the fake platform's dataset-build gate: the parked job goes on."""
    stack.platform.set_script(hold={})


def test_console_end_to_end(stack: Stack, page: Any) -> None:
    # -- log in ---------------------------------------------------------------------
    page.goto(stack.base + "/")
    page.get_by_label("API key").fill("fw_wrong")
    page.get_by_role("button", name="Log in").click()
    page.locator("#login-error").filter(has_text="unknown or revoked").wait_for()
    shot(page, stack, "01-login")
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
    shot(page, stack, "02-new-job-validation")
    page.get_by_label("Validation ratio").fill("")
    page.get_by_label("Eval size").fill("20")
    page.get_by_role("button", name="Create job").click()
    page.wait_for_url(re.compile(r"#/jobs/job_"))
    job_id = page.url.split("#/jobs/")[1]
    assert stack.get(f"/api/jobs/{job_id}")["config"]["data_split_config"]["eval_size"] == 20

    # -- watch the real workflow run it: parked at the dataset build, then released --
    page.locator("#job-status").filter(has_text="running").wait_for()
    shot(page, stack, "03-job-running")
    nav(page, "Jobs").click()
    row = page.locator(f'tr[data-job-id="{job_id}"]')
    row.locator("span.badge").filter(has_text="running").wait_for()
    shot(page, stack, "04-jobs-running")
    release_the_worker(stack)
    row.locator("span.badge").filter(has_text="completed").wait_for(timeout=RUN_TIMEOUT_MS)
    shot(page, stack, "05-jobs-completed")
    row.get_by_role("link").first.click()
    page.locator("#job-status").filter(has_text="completed").wait_for()
    page.locator("#promote-form").wait_for()
    shot(page, stack, "06-job-detail-completed")

    # -- chart and tables equal the API ----------------------------------------------
    job = stack.get(f"/api/jobs/{job_id}")
    assert job["status"] == "completed", job["error"]
    stages = job["dataset_stats"]["stages"]
    for stage in ("pulled", "valid", "unique", "kept"):
        assert page.locator(f'td[data-stage="{stage}"]').inner_text() == str(stages[stage])
    (candidate,) = job["candidates"]
    assert [e["eval_type"] for e in candidate["evaluations"]] == ["base", "icl", "customized"]
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
    # The fake answers ACCURACY of the 20 eval items like the reference: not a flat 1.0.
    assert expected[0]["value"] == pytest.approx(ACCURACY)
    card.locator('figure[data-metric="function_name_accuracy"]').screenshot(
        path=str(stack.screenshots / "06a-score-chart.png")
    )
    details = candidate["customization"]["details"]
    assert details["train_loss"], details  # the fake reports a loss history
    curve = card.locator("polyline.loss-train")
    assert curve.get_attribute("data-points") == str(len(details["train_loss"]))
    assert card.locator("circle.loss-val-dot").count() == len(details["val_loss"])
    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").click()
    assert download.value.suggested_filename == f"{job_id}-results.csv"
    csv_text = Path(download.value.path()).read_text()
    assert csv_text.splitlines()[0].startswith("job_id,client_id,workload_id,candidate,variant")

    # -- promote through the UI; read it back where applications do -------------------
    page.get_by_label("Variant").select_option("customized")
    page.get_by_label("Note (why this model)").fill("parity on tool calls, a fraction of the cost")
    page.get_by_role("button", name="Promote", exact=True).click()
    dialog = page.locator("#confirm")
    dialog.get_by_text("It replaces the configured model.").wait_for()
    dialog.get_by_role("button", name="Promote").click()
    page.locator("#promote-result").filter(has_text="Promoted").wait_for()
    page.locator("#promote-result").filter(has_text="The webhook failed").wait_for()
    model = stack.get(f"/api/workloads/{CLIENT}/{WORKLOAD}/model")
    assert model["job_id"] == job_id
    assert model["variant"] == "customized"
    assert model["model"] == candidate["customization"]["details"]["output_model"]
    assert model["note"] == "parity on tool calls, a fraction of the cost"
    assert model["webhook"]["delivered"] is False
    assert model["webhook"]["status_code"] == 410
    assert [e["current"]["id"] for e in stack.hook.bodies()] == [model["id"]]
    shot(page, stack, "07-job-promoted")

    # -- another operator promotes while the confirmation is open: 409, nothing lost --
    page.get_by_label("Variant").select_option("base")
    page.get_by_role("button", name="Promote", exact=True).click()
    dialog.get_by_text(f"It replaces {model['model']} (customized).").wait_for()
    other = stack.post(
        f"/api/workloads/{CLIENT}/{WORKLOAD}/promotions",
        {
            "job_id": job_id,
            "candidate": CANDIDATE,
            "variant": "icl",
            "note": "another operator",
            "expected_current": model["id"],
        },
    )
    assert other.status_code == 201, other.text
    icl = other.json()["current"]
    dialog.get_by_role("button", name="Promote").click()
    refused = page.locator("#promote-result .error-box")
    refused.filter(has_text=f"promotion {icl['id']} is in force now").wait_for()
    assert f"expected_current='{icl['id']}'" in refused.inner_text()
    assert stack.get(f"/api/workloads/{CLIENT}/{WORKLOAD}/model")["id"] == icl["id"]
    shot(page, stack, "08-promote-conflict")

    # -- the workload page: model in force, its failed webhook; roll back -------------
    page.goto(f"{stack.base}/#/workloads/{CLIENT}/{WORKLOAD}")
    page.locator("#current-model-name").filter(has_text=icl["model"]).wait_for()
    failed = page.locator('#current-webhook[data-delivered="false"]')
    failed.filter(has_text="refused with HTTP 410").wait_for()
    assert "1 attempt" in failed.inner_text()
    history = page.locator("#promotion-history tbody tr")
    assert history.count() == 2
    assert "failed: promotion webhook refused with HTTP 410" in history.nth(0).inner_text()
    shot(page, stack, "09-workload")
    page.locator("#rollback").click()
    dialog.get_by_text(f"{icl['model']} (icl) is rolled back").wait_for()
    dialog.get_by_role("button", name="Roll back").click()
    page.locator("#current-model-name").filter(has_text=model["model"]).wait_for()
    served = stack.get(f"/api/workloads/{CLIENT}/{WORKLOAD}/model")
    assert served["id"] == model["id"]
    kept = stack.get(f"/api/workloads/{CLIENT}/{WORKLOAD}/promotions")["items"]
    assert [(p["id"], p["rolled_back"]) for p in kept] == [
        (icl["id"], True),
        (model["id"], False),
    ]
    assert kept[0]["rollback_webhook"]["status_code"] == 410
    assert stack.hook.bodies()[-1]["event"] == "rollback"
    page.locator("#promotion-history tbody tr.rolled-back").get_by_text("rolled back").wait_for()
    shot(page, stack, "10-workload-rolled-back")
    nav(page, "Workloads").click()
    page.locator("#workloads-table").get_by_text(f"{model['model']} (customized)").wait_for()
    shot(page, stack, "11-workloads")

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
    shot(page, stack, "12-config-validation")
    page.get_by_label("Data split").fill('{"eval_size": 30, "min_total_records": 60}')
    page.get_by_role("button", name="Create configuration").click()
    page.wait_for_url(re.compile(r"#/configs/small-models$"))
    page.get_by_label("Description").fill("bigger eval set, 3 epochs")
    page.get_by_role("button", name="Save as new version").click()
    page.locator("#config-versions tbody tr").nth(1).wait_for()
    assert stack.get("/api/configs/small-models")["version"] == 2
    assert stack.get("/api/configs/small-models")["body"]["training_config"] == {"epochs": 3}
    shot(page, stack, "13-config-detail")
    nav(page, "Configurations").click()
    page.locator("#configs-table").get_by_role("link", name="small-models").wait_for()
    shot(page, stack, "14-configs")

    # -- cancel (the worker parked again) and delete, each after a confirmation ------
    stack.platform.set_script(hold={"build_datasets": True})
    created = stack.post("/api/jobs", {"client_id": CLIENT, "workload_id": WORKLOAD})
    assert created.status_code == 202, created.text
    second = created.json()["id"]
    page.goto(f"{stack.base}/#/jobs/{second}")
    page.locator("#job-status").filter(has_text="running").wait_for()
    page.get_by_role("button", name="Cancel job").click()
    dialog.wait_for(state="visible")
    shot(page, stack, "15-confirm-cancel")
    dialog.get_by_role("button", name="Keep it").click()
    assert stack.get(f"/api/jobs/{second}")["status"] == "running"
    page.get_by_role("button", name="Cancel job").click()
    dialog.get_by_role("button", name="Cancel job").click()
    release_the_worker(stack)
    page.locator("#job-status").filter(has_text="cancelled").wait_for(timeout=RUN_TIMEOUT_MS)
    shot(page, stack, "16-job-cancelled")
    page.get_by_role("button", name="Delete job").click()
    dialog.get_by_role("button", name="Delete job").click()
    page.wait_for_url(re.compile(r"#/jobs$"))
    gone = httpx.get(
        f"{stack.base}/api/jobs/{second}",
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
    shot(page, stack, "17-viewer-job")
    page.goto(f"{stack.base}/#/workloads/{CLIENT}/{WORKLOAD}")
    page.locator("#current-model-name").wait_for()
    assert page.locator("#rollback").count() == 0
    shot(page, stack, "18-viewer-workload")

    taken = sorted(p.name for p in stack.screenshots.glob("*.png"))
    assert len(taken) == 19, taken
    assert all(
        (stack.screenshots / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for name in taken
    )
