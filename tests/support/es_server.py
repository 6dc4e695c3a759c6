"""Start the Elasticsearch-API server of ``noida-db`` for tests and benchmarks.

noida-db (a PyPI dev dependency) ships one binary that speaks several database protocols;
we start only its Elasticsearch service, on a port the OS picks, with a throwaway data dir.
The binary is run directly rather than through the ``noida-db`` console script, whose Python
wrapper would survive as a parent and leave the server orphaned when stopped.
"""

from __future__ import annotations

import re
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path

START_TIMEOUT_S = 20.0
_URL_LINE = re.compile(rb"elasticsearch\s+(http://\S+)")


def _binary() -> Path:
    path = Path(str(files("noida_db").joinpath("noida-db")))
    if not path.is_file():
        raise RuntimeError(f"noida-db binary not found at {path}; install the dev extras")
    return path


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 -- our http URL
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start_es_server(tmp_dir: Path, *, port: int = 0) -> tuple[str, Callable[[], None]]:
    """Start noida-db's Elasticsearch API under ``tmp_dir``; return its URL and a stop function.

    ``port``: 0 picks a free one; a server restarted on its old port and ``tmp_dir`` keeps
    its data, like an Elasticsearch node coming back.

    Raises:
        RuntimeError: it did not answer within START_TIMEOUT_S (its output is in the message).
    """
    data_dir = tmp_dir / "noida-db"
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = tmp_dir / "noida-db.log"
    with log_path.open("wb") as log:
        # Port 0: the server binds a free port itself and prints it, so no port race.
        process = subprocess.Popen(
            [
                str(_binary()),
                "start",
                "--data-dir",
                str(data_dir),
                "--host",
                "127.0.0.1",
                "--only",
                "elasticsearch",
                "--elasticsearch-port",
                str(port),
            ],
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
    url: str | None = None
    while time.monotonic() < deadline and process.poll() is None:
        if url is None and (match := _URL_LINE.search(log_path.read_bytes())):
            url = match.group(1).decode()
        if url is not None and _answers(url):
            return url, stop
        time.sleep(0.05)
    stop()
    output = log_path.read_text(errors="replace")
    raise RuntimeError(f"noida-db Elasticsearch did not start in {START_TIMEOUT_S}s:\n{output}")
