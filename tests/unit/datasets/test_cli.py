"""`flywheel datasets build` over a SQLite log store in a temporary data dir."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from flywheel.cli.datasets import app
from flywheel.settings import get_settings
from flywheel.stores.logs_sqlite import SqliteLogStore
from tests.unit.datasets.factories import tool_logs


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("FLYWHEEL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("FLYWHEEL_CONFIG", raising=False)
    monkeypatch.delenv("ELASTICSEARCH_URL", raising=False)
    get_settings.cache_clear()
    store = SqliteLogStore.from_url(f"sqlite:///{tmp_path / 'data' / 'logs.db'}")
    store.write(tool_logs(80))
    store.close()
    yield tmp_path
    get_settings.cache_clear()


def test_build_writes_files_and_prints_summary(data_dir: Path) -> None:
    out = data_dir / "out"
    result = CliRunner().invoke(
        app,
        [
            "build",
            "--client-id",
            "c",
            "--workload-id",
            "w",
            "--out",
            str(out),
            "--eval-size",
            "7",
            "--min-total-records",
            "30",
            "--random-seed",
            "3",
            "--split-strategy",
            "time",
        ],
    )
    assert result.exit_code == 0, result.output
    manifest = orjson.loads((out / "manifest.json").read_bytes())
    assert manifest["splits"]["eval"]["records"] == 7
    assert manifest["seed"] == 3
    assert manifest["split_strategy"] == "time"
    assert "kept" in result.output
    assert "train.jsonl" in result.output


def test_too_few_records_exit_1_with_counts(data_dir: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "build",
            "--client-id",
            "c",
            "--workload-id",
            "w",
            "--out",
            str(data_dir / "o"),
            "--limit",
            "10",
            "--min-total-records",
            "9",
            "--eval-size",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output  # 10 pulled, 10 clean: enough
    result = CliRunner().invoke(
        app,
        ["build", "--client-id", "c", "--workload-id", "nobody", "--out", str(data_dir / "o2")],
    )
    assert result.exit_code == 1
    assert "pulled 0" in result.output


def test_invalid_override_exit_2(data_dir: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "build",
            "--client-id",
            "c",
            "--workload-id",
            "w",
            "--out",
            str(data_dir / "o"),
            "--val-ratio",
            "1.5",
        ],
    )
    assert result.exit_code == 2
