"""The CLI is tested against the real API app in-process (its TestClient is an httpx.Client)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from tests.api.conftest import api, stores

__all__ = ["api", "stores"]


@pytest.fixture
def state_url(tmp_path: Path) -> str:
    """SQLite only: this suite tests the CLI client; tests/api runs the app on both backends."""
    return f"sqlite:///{tmp_path / 'state.db'}"


@pytest.fixture(autouse=True)
def _quiet_api_logs() -> Iterator[None]:
    """The API runs in-process here; keep its log lines out of the CLI's captured output."""
    structlog.configure(logger_factory=structlog.ReturnLoggerFactory())
    yield
    structlog.reset_defaults()
