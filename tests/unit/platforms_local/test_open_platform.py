"""The worker's composition root hands the local-platform settings to the platform."""

from __future__ import annotations

from pathlib import Path

import pytest

from flywheel.platforms.local import LocalPlatform
from flywheel.settings import Settings
from flywheel.workflow.runtime import PLATFORM_ENV, open_platform


@pytest.fixture(autouse=True)
def _local_platform_selected(monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither a plugged-in platform nor NMP may win over the local one."""
    for name in (PLATFORM_ENV, "NMP_BASE_URL", "NMP_DATASTORE_URL", "NMP_NIM_URL"):
        monkeypatch.delenv(name, raising=False)


def test_settings_reach_the_local_platform(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        torch_threads=3,
        training_threads=5,
        max_concurrent_trainings=2,
    )
    assert settings.platform_kind == "local"
    platform = open_platform(settings)

    assert isinstance(platform, LocalPlatform)
    assert platform.data_dir == tmp_path / "data"
    assert platform.torch_threads == 3
    assert platform.training_threads == 5
    assert platform.max_concurrent_trainings == 2


def test_environment_variables_reach_the_local_platform(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLYWHEEL_TORCH_THREADS", "2")
    monkeypatch.setenv("FLYWHEEL_TRAINING_THREADS", "0")
    monkeypatch.setenv("FLYWHEEL_MAX_CONCURRENT_TRAININGS", "4")
    platform = open_platform(Settings(data_dir=tmp_path))

    assert isinstance(platform, LocalPlatform)
    assert platform.torch_threads == 2
    # 0 training threads means "as many as torch_threads".
    assert platform.training_threads == 2
    assert platform.max_concurrent_trainings == 4
