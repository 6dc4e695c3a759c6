"""The workflow's backoff schedules: state-store outages ridden out by the tasks, and the
dataset step waiting for the log store."""

from __future__ import annotations

from flywheel.workflow.options import WorkflowOptions


def _schedule(options: WorkflowOptions) -> list[float]:
    delays: list[float] = []
    while (delay := options.store_retry_delay(len(delays))) is not None:
        delays.append(delay)
    return delays


def test_default_task_retries_ride_out_a_minute_long_state_store_outage() -> None:
    delays = _schedule(WorkflowOptions())
    assert delays[:5] == [1.0, 2.0, 4.0, 8.0, 8.0]  # doubling, then capped
    assert max(delays) == 8.0  # never asleep long after the store is back
    assert sum(delays) >= 60.0
    assert sum(delays[:-1]) < 120.0 <= sum(delays)  # then the sweeper takes over


def test_a_zero_ride_out_budget_gives_up_at_once() -> None:
    assert WorkflowOptions(store_outage_ride_out_s=0).store_retry_delay(0) is None


def test_log_store_wait_backs_off_to_its_cap() -> None:
    options = WorkflowOptions(retry_backoff_s=2.0, log_store_wait_max_backoff_s=10.0)
    assert [options.log_store_wait_delay(n) for n in range(1, 6)] == [2.0, 4.0, 8.0, 10.0, 10.0]
    assert options.log_store_wait_delay(10_000) == 10.0  # no overflow on a very long wait
