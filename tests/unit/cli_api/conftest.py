"""The CLI is tested against the real API app in-process (its TestClient is an httpx.Client)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog

from tests.api.conftest import api, stores

__all__ = ["api", "stores"]


@pytest.fixture(autouse=True)
def _quiet_api_logs() -> Iterator[None]:
    """The API runs in-process here; keep its log lines out of the CLI's captured output."""
    structlog.configure(logger_factory=structlog.ReturnLoggerFactory())
    yield
    structlog.reset_defaults()
