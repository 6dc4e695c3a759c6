"""The API and the CLI start without the ML stack.

A light install (no ``local`` extra) must be able to serve the API and run the CLI, and even
with the stack installed an API process should not pay torch's import time and memory. Only
the local platform's workers import torch, transformers and sentence-transformers, inside
their builders. Each check runs in a fresh interpreter, because this test process may have
imported them already.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "transformers", "sentence_transformers", "peft")

_REPORT = f"""
import json, sys
print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))
"""


def _heavy_modules_after(code: str, tmp_path: Path) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLYWHEEL_")}
    env |= {"FLYWHEEL_DATA_DIR": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1"}
    for name in ("MONGODB_URL", "ELASTICSEARCH_URL", "REDIS_URL", "NMP_BASE_URL"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-c", code + _REPORT],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


@pytest.mark.parametrize(
    "code",
    [
        "import flywheel.api.app, flywheel.cli",
        # Building the app on the embedded stores, as `flywheel serve` does before serving.
        "from flywheel.api.app import create_app\ncreate_app()",
        # The CLI's own start-up: every subcommand registered, then --help.
        "import sys\nfrom flywheel.cli import main\nsys.argv = ['flywheel', '--help']\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert exc.code == 0, exc.code\n",
    ],
    ids=["import", "create_app", "cli-help"],
)
def test_api_and_cli_do_not_import_the_ml_stack(code: str, tmp_path: Path) -> None:
    assert _heavy_modules_after(code, tmp_path) == []


def test_the_check_sees_a_heavy_import(tmp_path: Path) -> None:
    # Guards the test itself: were the report broken, the checks above would pass vacuously.
    # A stand-in module, so the guard holds on a light install without torch too.
    code = "import sys, types\nsys.modules['torch'] = types.ModuleType('torch')"
    assert _heavy_modules_after(code, tmp_path) == ["torch"]
