"""The recommendation's traffic volume is the workload's chat log count over the last 30 days.

Monthly savings scale with ``requests_last_30_days``, so a count that included older traffic
(or other workloads' traffic) would overstate every projection. Driven in this process
against real SQLite stores and the fake platform, with the job's clock set ten days after
the fixture's logs so that some of the seeded traffic falls outside the window.
"""

from __future__ import annotations

import dataclasses

import pytest

from flywheel.domain.jobs import JobStatus
from flywheel.domain.logs import ChatLog
from flywheel.stores.logs_sqlite import SqliteLogStore
from flywheel.workflow.steps import StepRunner, WorkflowServices, now_ms
from tests.workflow.support import CLIENT, chat_logs, create_job, drive, llm_config

DAY_MS = 24 * 3600 * 1000
#: The fixture's chat logs are stamped from this instant on (``support.chat_logs``).
LOGS_START_MS = 1_700_000_000_000
#: "Now" for the job: ten days after the fixture's logs.
JOB_NOW_MS = LOGS_START_MS + 10 * DAY_MS


def _at(logs: list[ChatLog], timestamp: int, **update: str) -> list[ChatLog]:
    return [log.model_copy(update={"timestamp": timestamp, **update}) for log in logs]


def _seed_traffic(logs: SqliteLogStore) -> int:
    """Add traffic in and out of the window; the count the job must report."""
    seeded = chat_logs(40)  # the fixture already wrote these, inside the window
    # Earlier repeats of known prompts: deduplicated out of the datasets, but real traffic.
    inside = _at(seeded[20:27], JOB_NOW_MS - 25 * DAY_MS)
    outside = _at(seeded[:15], JOB_NOW_MS - 31 * DAY_MS)  # older than 30 days
    long_ago = _at(seeded[:5], JOB_NOW_MS - 400 * DAY_MS)
    elsewhere = _at(seeded[:9], JOB_NOW_MS - DAY_MS, workload_id="another-workload")
    logs.write([*inside, *outside, *long_ago, *elsewhere])
    return len(seeded) + len(inside)


@pytest.fixture
def runner(services: WorkflowServices) -> StepRunner:
    # A ticking clock shifted into the past: steps still see time pass (polls, leases),
    # and the 30-day window ends ten days after the fixture's logs.
    shift = now_ms() - JOB_NOW_MS
    return StepRunner(dataclasses.replace(services, clock=lambda: now_ms() - shift))


def test_requests_last_30_days_counts_only_the_window(
    runner: StepRunner, logs: SqliteLogStore
) -> None:
    expected = _seed_traffic(logs)
    assert logs.count(CLIENT, "router") == expected + 15 + 5  # the store holds more
    job = create_job(runner.s.state, llm_config(["small"], customize=False))

    done = drive(runner, job.id)

    assert done.status is JobStatus.completed, done.error
    assert done.recommendation is not None
    assert done.recommendation["requests_last_30_days"] == expected
    ranked = done.recommendation["ranked"]
    assert ranked, done.recommendation  # the fake candidate answers like the reference
    reference = done.recommendation["reference_cost_per_1k_requests"]
    assert reference > 0
    assert done.recommendation["reference_monthly_cost"] == pytest.approx(
        reference / 1000 * expected
    )
    for row in ranked:
        assert row["projected_monthly_cost"] == pytest.approx(
            row["cost_per_1k_requests"] / 1000 * expected
        )
        assert row["projected_monthly_savings"] == pytest.approx(
            (reference - row["cost_per_1k_requests"]) / 1000 * expected
        )
