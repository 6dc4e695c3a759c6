"""Start the mongoeco MongoDB wire-protocol server for tests.

mongoeco needs Python >= 3.13 and the test venv is 3.11, so the server runs as a subprocess
of the mongoeco venv (``FLYWHEEL_MONGO_PYTHON``) around ``mongoeco_launcher.py``; this module
never imports mongoeco. The launcher binds port 0 and writes the port it got to a file, so
there is no race for a free port.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

START_TIMEOUT_S = 30.0
_DEFAULT_PYTHON = Path(__file__).resolve().parents[2] / ".venv-mongo" / "bin" / "python"
_LAUNCHER = Path(__file__).with_name("mongoeco_launcher.py")


def _mongo_python() -> str:
    configured = os.environ.get("FLYWHEEL_MONGO_PYTHON")
    if configured:
        return configured
    if _DEFAULT_PYTHON.is_file():
        return str(_DEFAULT_PYTHON)
    raise RuntimeError(
        f"no Python for the mongoeco test server: {_DEFAULT_PYTHON} is missing and "
        "FLYWHEEL_MONGO_PYTHON is unset. Run scripts/test once to create the mongoeco venv, "
        "or set MONGODB_URL to a real MongoDB."
    )


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def start_mongo_wire_server(
    tmp_dir: Path, *, port: int = 0, sqlite: Path | None = None
) -> tuple[str, Callable[[], None]]:
    """Start a mongoeco server; return its URL and a function that stops it.

    The URL names the database ``flywheel_test``; tests may pick others on the same server.
    In memory by default, on a free port; ``port`` binds that one (to restart a server where
    its clients expect it) and ``sqlite`` keeps the data in that file across restarts.

    Raises:
        RuntimeError: no mongoeco Python, or the server did not accept connections within
            START_TIMEOUT_S (its output is in the message).
    """
    tmp_dir.mkdir(parents=True, exist_ok=True)
    port_file = tmp_dir / "mongoeco.port"
    port_file.unlink(missing_ok=True)
    log_path = tmp_dir / "mongoeco.log"
    args = [_mongo_python(), str(_LAUNCHER), str(port_file)]
    if port:
        args += ["--port", str(port)]
    if sqlite is not None:
        args += ["--sqlite", str(sqlite)]
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def stop() -> None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline and process.poll() is None:
        if port_file.is_file() and _accepts(port := int(port_file.read_text())):
            return f"mongodb://127.0.0.1:{port}/flywheel_test?directConnection=true", stop
        time.sleep(0.1)
    stop()
    output = log_path.read_text(errors="replace")[-4000:]
    raise RuntimeError(
        f"mongoeco wire server did not start within {START_TIMEOUT_S:.0f}s "
        f"(exit code {process.returncode}); output:\n{output}"
    )
