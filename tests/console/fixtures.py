"""Console test helpers: jobs run by the real workflow on the fast fake model platform.

Nothing here writes job state by hand. A job is created through the API, and its workflow
steps run in this process exactly as a worker runs them (``StepRunner``), against
``tests.workflow.fake_platform`` (scripted deployments, evaluations made to a scripted
accuracy, LoRA customizations with loss curves), so what the console shows is what the
workflow really records.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from flywheel.domain.jobs import Job, JobId
from flywheel.stores.base import LogStore, StateStore
from flywheel.workflow.steps import StepRunner
from tests.workflow.fake_platform import FakePlatform
from tests.workflow.support import drive, make_services

CANDIDATE = "small-llm"

#: The base job configuration of console tests: one small candidate, a 20-record eval set.
JOB_CONFIG: dict[str, Any] = {
    "candidates": [{"name": CANDIDATE, "gpus": 1}],
    "data_split_config": {"eval_size": 20, "min_total_records": 40},
    "evaluation_config": {"bootstrap_samples": 200},
}


def write_job_config(path: Path) -> Path:
    """Write :data:`JOB_CONFIG` as the API's base config file (``FLYWHEEL_CONFIG``)."""
    path.write_text(yaml.safe_dump(JOB_CONFIG))
    return path


@dataclass
class Workflow:
    """The workflow's steps over the API's own stores, on the fake platform."""

    runner: StepRunner
    platform: FakePlatform

    @classmethod
    def over(cls, state: StateStore, logs: LogStore, data_dir: Path) -> Workflow:
        """Run steps on ``state`` and ``logs``; the platform and capacity live in ``data_dir``."""
        data_dir.mkdir(parents=True, exist_ok=True)
        platform = FakePlatform(data_dir / "fake_platform.db")
        services = make_services(state=state, logs=logs, platform=platform, data_dir=data_dir)
        return cls(runner=StepRunner(services), platform=platform)

    def step(self, job_id: str) -> Job:
        """Run the job's next step only (the first one claims it: ``running``)."""
        self.runner.advance(JobId(job_id))
        return self.runner.s.state.get_job(JobId(job_id))

    def run(self, job_id: str) -> Job:
        """Run the job's steps until it ends (bounded; fails the test if it does not)."""
        return drive(self.runner, JobId(job_id), timeout_s=60.0)
