"""The workflow tests' fixtures (real SQLite stores, the fake platform), reused here."""

from tests.workflow.conftest import data_dir, logs, platform, runner, services, state

__all__ = ["data_dir", "logs", "platform", "runner", "services", "state"]
