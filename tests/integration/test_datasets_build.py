"""build_datasets end to end on the real SQLite log store."""

from __future__ import annotations

from pathlib import Path

import orjson
from tests.unit.datasets.factories import job_config, log, tool_logs

from flywheel.services.datasets import build_datasets
from flywheel.stores.logs_sqlite import SqliteLogStore


def test_build_from_sqlite_store(tmp_path: Path) -> None:
    store = SqliteLogStore.from_url(f"sqlite:///{tmp_path / 'logs.db'}")
    try:
        store.write(tool_logs(120))
        store.write(
            [
                log(1000 + i, "broken", call="t0", tools=["t0"], finish_reason="length")
                for i in range(4)
            ]
        )
        store.write(tool_logs(30, start=5000)[:1])  # a newer duplicate of record 0's prompt
        result = build_datasets(
            log_store=store,
            client_id="c",
            workload_id="w",
            config=job_config(limit=100, near_duplicate_threshold=0.9),
            out_dir=tmp_path / "out",
        )
    finally:
        store.close()
    stages = result.manifest["stages"]
    assert stages["pulled"] == 100
    assert stages["dropped"]["truncated"] == 4
    assert stages["kept_window_ms"][1] == 5_000_000  # the newest copy was kept
    assert result.manifest["contamination"]["checked"] == "exact+near"
    assert result.manifest["contamination"]["near_threshold"] == 0.8  # the default
    for split in result.manifest["splits"].values():
        # tool_logs records call one tool each, so per-tool equals per-label (less no_tool)
        labels = {k: v for k, v in split["by_label"].items() if k != "no_tool"}
        assert split["by_tool"] == labels
    assert set(result.manifest["token_counters"]) == {"small", "large"}
    manifest = orjson.loads((tmp_path / "out" / "manifest.json").read_bytes())
    assert manifest["files"]["train.jsonl"]["records"] == manifest["splits"]["train"]["records"]
