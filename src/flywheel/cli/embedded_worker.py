"""A ``flywheel worker`` child process for single-command runs (``flywheel serve``, the demo).

Without ``REDIS_URL`` the API and the worker share the embedded filesystem broker under
``FLYWHEEL_DATA_DIR``, so ``flywheel serve`` starts one worker beside the API and stops it
when the API stops. The worker runs in its own session (process group), so stopping it
reaches its prefork pool too; on Linux it also gets ``SIGTERM`` if its parent dies without
cleaning up (``PR_SET_PDEATHSIG``), so a killed ``serve`` leaves no orphan worker.

Platform work the worker started (the local platform's evaluation and training processes)
runs in sessions of its own and is not stopped here: it writes its results to files, and
the next worker picks them up.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO

import structlog

log = structlog.get_logger(__name__)

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def worker_command(*, concurrency: int, beat: bool) -> list[str]:
    """The command line of a ``flywheel worker`` run with this interpreter."""
    return [
        sys.executable, "-c", "from flywheel.cli import main; main()", "worker",
        "--concurrency", str(concurrency), "--beat" if beat else "--no-beat",
    ]  # fmt: skip


class EmbeddedWorker:
    """One ``flywheel worker`` child process; a context manager that stops it on exit."""

    def __init__(
        self,
        *,
        env: Mapping[str, str] | None = None,
        log_file: Path | None = None,
        concurrency: int = 2,
        beat: bool = True,
        stop_timeout_s: float = 15.0,
    ) -> None:
        """Configure the worker: ``env`` replaces the inherited environment when given;
        its output goes to ``log_file`` (appended) or to this process's stdout/stderr."""
        self._env = dict(env) if env is not None else None
        self._log_file = log_file
        self._command = worker_command(concurrency=concurrency, beat=beat)
        self._stop_timeout_s = stop_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The worker's pid while it runs."""
        return self._proc.pid if self._proc is not None else None

    def alive(self) -> bool:
        """True while the worker process runs."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start the worker (once)."""
        if self._proc is not None:
            return
        if self._log_file is not None:
            self._log_file.parent.mkdir(parents=True, exist_ok=True)
            self._out = self._log_file.open("ab")
        self._proc = subprocess.Popen(  # preexec: only the death signal
            self._command,
            env=self._env,
            stdout=self._out,
            stderr=subprocess.STDOUT if self._out is not None else None,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        log.info("embedded_worker_started", pid=self._proc.pid)

    def stop(self) -> None:
        """Stop the worker and its pool: ``SIGTERM`` (warm shutdown), then ``SIGKILL``."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=self._stop_timeout_s)
                except subprocess.TimeoutExpired:
                    log.warning("embedded_worker_killed", pid=proc.pid)
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
            # Pool children left behind by a worker that died first.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            log.info("embedded_worker_stopped", pid=proc.pid, returncode=proc.returncode)
        if self._out is not None:
            self._out.close()
            self._out = None

    def __enter__(self) -> EmbeddedWorker:
        """Start the worker."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the worker."""
        self.stop()
