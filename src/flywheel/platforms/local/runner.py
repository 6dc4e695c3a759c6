"""Worker-process entry: ``python -m flywheel.platforms.local.runner WORK_DIR``.

Reads ``WORK_DIR/spec.json``, runs the work its ``kind`` names and leaves the outcome in
``progress.json`` (``completed``, ``cancelled`` or ``failed`` with the reason). Training and
evaluation run here, not in the API or workflow process, so those stay responsive and a
crash costs only this process.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from flywheel.platforms.local.jobfiles import Cancelled, WorkDir, read_json


def _runners() -> dict[str, Callable[[WorkDir, Mapping[str, Any]], None]]:
    from flywheel.platforms.local.evaluation import run_evaluation
    from flywheel.platforms.local.lora import run_customization

    runners: dict[str, Callable[[WorkDir, Mapping[str, Any]], None]] = {
        "evaluation": run_evaluation,
        "customization": run_customization,
    }
    try:
        from flywheel.platforms.local import embeddings, ranking
    except ImportError:  # pragma: no cover - embeddings module is optional
        return runners
    runners["embedding_customization"] = embeddings.run_embedding_customization
    runners["embedding_evaluation"] = ranking.run_embedding_evaluation
    return runners


def run(work: WorkDir) -> int:
    """Run the work in ``work``; the exit status (0 for completed or cancelled)."""
    spec = read_json(work.spec)
    if not isinstance(spec, dict):
        work.report("failed", message=f"no spec at {work.spec}")
        return 2
    runner = _runners().get(str(spec.get("kind")))
    if runner is None:
        work.report("failed", message=f"unknown work kind {spec.get('kind')!r}")
        return 2
    try:
        runner(work, spec)
    except Cancelled:
        work.report("cancelled", message="cancelled on request")
        return 0
    except Exception as exc:
        traceback.print_exc()
        work.report("failed", message=f"{type(exc).__name__}: {exc}"[:2000])
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m flywheel.platforms.local.runner WORK_DIR", file=sys.stderr)
        return 2
    return run(WorkDir(Path(args[0])))


if __name__ == "__main__":
    sys.exit(main())
