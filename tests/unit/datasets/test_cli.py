"""`flywheel datasets build` over a SQLite log store in a temporary data dir."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import Result
from typer.testing import CliRunner

from flywheel.cli.datasets import app
from flywheel.domain.jobs import JobType, NamedConfig
from flywheel.domain.logs import ChatLog
from flywheel.settings import get_settings
from flywheel.stores.logs_sqlite import SqliteLogStore
from flywheel.stores.registry import open_state_store
from tests.unit.datasets.factories import log, tool_logs


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


def _write(data_dir: Path, workload: str, records: list[ChatLog]) -> None:
    store = SqliteLogStore.from_url(f"sqlite:///{data_dir / 'data' / 'logs.db'}")
    store.write([r.model_copy(update={"workload_id": workload}) for r in records])
    store.close()


def _build(out: Path, *args: str, workload: str = "w") -> Result:
    return CliRunner().invoke(
        app, ["build", "--client-id", "c", "--workload-id", workload, "--out", str(out), *args]
    )


def _manifest(out: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = orjson.loads((out / "manifest.json").read_bytes())
    return manifest


def test_a_named_config_is_applied_under_the_overrides(data_dir: Path) -> None:
    state = open_state_store(get_settings().state_store_url)
    body = {
        "data_split_config": {"eval_size": 4, "min_total_records": 30, "random_seed": 9},
        "candidates": [
            {"name": "remote-llm", "context_length": 4096, "endpoint_url": "http://llm.test"}
        ],
    }
    state.create_config(
        NamedConfig(name="small-eval", version=1, job_type=JobType.llm_job, body=body)
    )
    state.close()
    out = data_dir / "named"
    result = _build(out, "--config-name", "small-eval", "--random-seed", "5")
    assert result.exit_code == 0, result.output
    manifest = _manifest(out)
    assert manifest["splits"]["eval"]["records"] == 4  # from the named config
    assert manifest["seed"] == 5  # the command line wins over it
    assert list(manifest["token_counters"]) == ["remote-llm"]
    assert manifest["token_counters"]["remote-llm"]["counter"] == "estimate"

    missing = _build(data_dir / "missing", "--config-name", "no-such-config")
    assert missing.exit_code == 2
    assert "no-such-config" in missing.output


def test_function_arguments_can_be_kept_as_logged(data_dir: Path) -> None:
    raw = '{ "x" : "as logged" }'
    records = [
        log(i, f"spaced arguments request {i} words w{i}", call="t0", tools=["t0"], arguments=raw)
        for i in range(60)
    ]
    _write(data_dir, "spaced", records)

    def arguments(out: Path) -> set[str]:
        rows = [orjson.loads(line) for line in (out / "train.jsonl").read_bytes().splitlines()]
        return {
            call["function"]["arguments"]
            for row in rows
            for call in row["messages"][-1].get("tool_calls") or []
        }

    kept = data_dir / "kept"
    result = _build(kept, "--no-parse-function-arguments", workload="spaced")
    assert result.exit_code == 0, result.output
    assert arguments(kept) == {raw}
    assert _manifest(kept)["config"]["data_split_config"]["parse_function_arguments"] is False

    parsed = data_dir / "parsed"
    assert _build(parsed, "--parse-function-arguments", workload="spaced").exit_code == 0
    assert arguments(parsed) == {'{"x":"as logged"}'}


def test_contamination_threshold_option(data_dir: Path) -> None:
    out = data_dir / "c"
    result = _build(out, "--contamination-threshold", "0.95")
    assert result.exit_code == 0, result.output
    contamination = _manifest(out)["contamination"]
    assert contamination["near_threshold"] == 0.95
    assert contamination["checked"] == "exact+near"
    bad = _build(data_dir / "bad", "--contamination-threshold", "0")
    assert bad.exit_code == 2
    assert "contamination_threshold" in bad.output


def test_too_few_records_message_gives_the_drop_reasons(data_dir: Path) -> None:
    truncated = [
        log(i, f"cut short {i}", call="t0", tools=["t0"], finish_reason="length") for i in range(5)
    ]
    bad_args = [
        log(10 + i, f"bad args {i}", call="t0", tools=["t0"], arguments="{oops") for i in range(3)
    ]
    good = [log(20 + i, f"fine request {i}", call="t0", tools=["t0"]) for i in range(4)]
    _write(data_dir, "mixed", [*truncated, *bad_args, *good])
    result = _build(data_dir / "m", workload="mixed")
    assert result.exit_code == 1
    text = " ".join(result.output.split())  # undo the console's line wrapping
    assert "only 4 clean records" in text
    assert "truncated=5" in text
    assert "invalid_tool_arguments=3" in text
    assert not (data_dir / "m" / "manifest.json").exists()
