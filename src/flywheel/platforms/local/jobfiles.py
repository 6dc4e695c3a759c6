"""The files through which a worker process and the platform talk.

Each piece of local platform work has a directory holding ``spec.json`` (what to do,
written by the platform), ``progress.json`` (where it stands, replaced atomically by the
worker), ``result.json`` (what it produced), ``cancel`` (a flag the worker checks between
steps) and ``worker.log`` (the worker's stdout and stderr, for failure reasons).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so that readers see the old file or the new one, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(orjson.dumps(data, option=orjson.OPT_INDENT_2))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> Any:
    """The JSON in ``path``, or ``None`` when the file does not exist."""
    try:
        return orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every row of a small JSON Lines file (blank lines skipped)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [orjson.loads(line) for line in lines if line.strip()]


class Cancelled(Exception):
    """The platform asked the work to stop."""


class WorkDir:
    """One piece of work's directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.spec = path / "spec.json"
        self.progress = path / "progress.json"
        self.result = path / "result.json"
        self.cancel_flag = path / "cancel"
        self.log = path / "worker.log"

    def report(
        self,
        state: str,
        *,
        percent: float | None = None,
        message: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Replace ``progress.json``."""
        write_json_atomic(
            self.progress,
            {
                "state": state,
                "percent": percent,
                "message": message,
                "details": details or {},
                "updated_at": time.time(),
            },
        )

    def cancel_requested(self) -> bool:
        """Whether the platform asked this work to stop."""
        return self.cancel_flag.exists()

    def log_tail(self, chars: int = 2000) -> str:
        """The end of the worker's log (the reason a dead worker died, usually)."""
        try:
            with self.log.open("rb") as handle:
                handle.seek(max(0, self.log.stat().st_size - chars))
                return handle.read().decode(errors="replace").strip()
        except FileNotFoundError:
            return ""
