"""``flywheel logs load``: the sub-app on its own, over the embedded SQLite log store."""

from __future__ import annotations

import gzip
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from flywheel.cli.logs import app
from flywheel.settings import get_settings
from flywheel.stores.base import LogStore
from flywheel.stores.registry import open_log_store

runner = CliRunner()


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("FLYWHEEL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("ELASTICSEARCH_URL", raising=False)
    get_settings.cache_clear()
    yield tmp_path / "data"
    get_settings.cache_clear()


@pytest.fixture
def store(data_dir: Path) -> Iterator[LogStore]:
    log_store = open_log_store(f"sqlite:///{data_dir / 'logs.db'}")
    yield log_store
    log_store.close()


def chat(i: int, **overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "client_id": "aiva",
        "workload_id": "router",
        "timestamp": int(time.time()) - i,  # epoch seconds, to see the note
        "request": {"model": "m", "messages": [{"role": "user", "content": f"q{i}"}]},
        "response": {"choices": [{"message": {"role": "assistant", "content": "a"}}]},
    }
    record.update(overrides)
    return record


def write(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(lines))
    return path


def jsonl(*records: object) -> list[bytes]:
    return [orjson.dumps(r) + b"\n" for r in records]


def test_load_keeps_valid_records_and_reports_the_rest(tmp_path: Path) -> None:
    lines = [*jsonl(chat(1), chat(2)), b"{broken\n", *jsonl(chat(3, client_id=None))]
    path = write(tmp_path / "logs.jsonl", lines)
    result = runner.invoke(app, ["load", str(path), "--batch-size", "1"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "accepted" in out
    assert "rejected" in out
    assert "not valid JSON" in out
    assert "client_id" in out
    assert "timestamps were epoch seconds" in out
    log_store = open_log_store(get_settings().log_store_url)
    try:
        assert log_store.count("aiva", "router") == 2
    finally:
        log_store.close()


def test_flags_override_ids(tmp_path: Path, store: LogStore) -> None:
    no_ids = {k: v for k, v in chat(1).items() if k not in ("client_id", "workload_id")}
    path = write(tmp_path / "logs.jsonl", jsonl(no_ids, chat(2)))
    result = runner.invoke(
        app, ["load", str(path), "--client-id", "acme", "--workload-id", "support"]
    )
    assert result.exit_code == 0, result.output
    assert store.count("acme", "support") == 2
    assert "replaced by the flags" in result.stdout


def test_gzip_file_loads(tmp_path: Path, store: LogStore) -> None:
    path = tmp_path / "logs.jsonl.gz"
    path.write_bytes(gzip.compress(b"".join(jsonl(chat(1), chat(2), chat(3)))))
    result = runner.invoke(app, ["load", str(path)])
    assert result.exit_code == 0, result.output
    assert store.count("aiva", "router") == 3


@pytest.mark.parametrize(
    ("lines", "message"),
    [([], "empty"), ([b"\n\n"], "empty"), ([b"{bad\n", b"[1]\n"], "nothing was stored")],
)
def test_nothing_stored_exits_1(tmp_path: Path, lines: list[bytes], message: str) -> None:
    path = write(tmp_path / "logs.jsonl", lines)
    result = runner.invoke(app, ["load", str(path)])
    assert result.exit_code == 1
    assert message in result.stdout


def test_strict_fails_on_any_rejection(tmp_path: Path) -> None:
    path = write(tmp_path / "logs.jsonl", [*jsonl(chat(1)), b"{bad\n"])
    assert runner.invoke(app, ["load", str(path)]).exit_code == 0
    assert runner.invoke(app, ["load", str(path), "--strict"]).exit_code == 1


def test_error_list_is_limited(tmp_path: Path) -> None:
    path = write(tmp_path / "logs.jsonl", [*jsonl(chat(1)), *([b"{bad\n"] * 30)])
    result = runner.invoke(app, ["load", str(path), "--show-errors", "5"])
    assert result.exit_code == 0
    assert "and 25 more rejected records" in result.stdout


def test_user_text_is_not_read_as_markup(tmp_path: Path) -> None:
    record = chat(1, request={"model": "m", "messages": [{"role": "[bold]x[/bold]"}]})
    path = write(tmp_path / "logs.jsonl", [*jsonl(chat(2), record)])
    result = runner.invoke(app, ["load", str(path)])
    assert "[bold]x[/bold]" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["load", "missing.jsonl"],
        ["load", "{path}", "--client-id", "bad id"],
        ["load", "{path}", "--batch-size", "0"],
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str]) -> None:
    path = write(tmp_path / "logs.jsonl", jsonl(chat(1)))
    result = runner.invoke(app, [a.format(path=path) for a in args])
    assert result.exit_code == 2
