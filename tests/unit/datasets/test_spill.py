"""Rendered rows in parts, and the spill that stores them: byte-identical to the full rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from flywheel.domain.datasets.formats import eval_line, render_rows, sft_line
from flywheel.domain.datasets.records import ParsedRecord, parse_record
from flywheel.services import dataset_files
from flywheel.services.dataset_files import JsonlWriter, SpillFile
from tests.unit.datasets.factories import chat


def _history_with_tool_turn(user: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A request whose history holds an assistant tool call (null content, object args)."""
    request, response = chat(user, call="get", tools=["get"])
    request["messages"][1:1] = [
        {"role": "user", "content": "earlier"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c0", "type": "function", "function": {"name": "get", "arguments": {"x": 1}}}
            ],
        },
        {"role": "tool", "tool_call_id": "c0", "content": "sunny"},
    ]
    return request, response


CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "tool": chat("weather in Paris?", call="get", arguments={"x": "é"}),
    "string_arguments": chat("spaced args", call="get", arguments='{"x":  "y"}'),
    "generic": chat("plain question", content="plain answer"),
    "no_system": chat("no system", system=False),
    "offered_not_called": chat("offered", tools=["a", "b"], content="none needed"),
    "history_with_null_content": _history_with_tool_turn("follow-up"),
}


def _parsed(name: str) -> ParsedRecord:
    parsed = parse_record(5, *CASES[name])
    assert isinstance(parsed, ParsedRecord), parsed
    return parsed


@pytest.mark.parametrize("parse_arguments", [True, False])
@pytest.mark.parametrize("name", sorted(CASES))
def test_render_rows_equals_the_full_lines(name: str, parse_arguments: bool) -> None:
    parsed = _parsed(name)
    rows = render_rows(parsed, parse_arguments=parse_arguments)
    assert rows.sft_line == sft_line(parsed, parse_arguments=parse_arguments)
    assert rows.eval_line == eval_line(parsed, parse_arguments=parse_arguments)


@pytest.mark.parametrize("settings_limit", [0, 1, 4096])
def test_spill_reads_back_every_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings_limit: int
) -> None:
    # A tiny copy chunk cuts rows across blocks; a tiny settings limit spills them inline.
    monkeypatch.setattr(dataset_files, "COPY_CHUNK", 7)
    monkeypatch.setattr(dataset_files, "SETTINGS_LIMIT", settings_limit)
    parsed = [_parsed(name) for name in sorted(CASES)] * 2
    rendered = [render_rows(p, parse_arguments=True) for p in parsed]
    spill = SpillFile(tmp_path / "spill.tmp")
    try:
        for rows in rendered:
            spill.add(rows)
        spill.finish()
        assert len(spill) == len(rendered)
        for i, rows in enumerate(rendered):
            assert spill.eval_line(i) == rows.eval_line
            assert spill.sft_line(i) == rows.sft_line
            assert spill.eval_row(i) == orjson.loads(rows.eval_line)
            assert spill.sft_row(i) == orjson.loads(rows.sft_line)
        writer = JsonlWriter(tmp_path / "train.jsonl")
        writer.write_rows(spill.sft_lines(2, 9), 7)
        written = writer.commit()
        expected = b"".join(r.sft_line + b"\n" for r in rendered[2:9])
        assert (tmp_path / "train.jsonl").read_bytes() == expected
        assert (written.records, written.bytes) == (7, len(expected))
    finally:
        spill.close()
    assert list(tmp_path.glob("spill.tmp*")) == []
