"""Worker processes: launch, liveness, kill, and the training-slot budget.

A worker runs ``python -m flywheel.platforms.local.runner WORK_DIR`` in its own session
(process group), so a kill takes its children too. Its pid is written to ``worker.pid``.
Liveness is checked through the :class:`subprocess.Popen` object when this process started
the worker (which also reaps it), and otherwise through ``/proc``: the pid must be alive,
not a zombie, and its command line must name the work directory, so a recycled pid is not
mistaken for the worker.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from flywheel.platforms.local.jobfiles import WorkDir


class WorkerPool:
    """Starts workers and counts the running trainings against a budget."""

    def __init__(self, *, slots_dir: Path, python: str | None = None) -> None:
        self.slots_dir = slots_dir
        self.python = python or sys.executable
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    def launch(self, work: WorkDir, *, env: dict[str, str] | None = None) -> int:
        """Start the worker for ``work``; its pid."""
        with work.log.open("ab") as log:
            proc = subprocess.Popen(
                [self.python, "-m", "flywheel.platforms.local.runner", str(work.path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, **(env or {})},
            )
        self._procs[str(work.path)] = proc
        # Reap the child when it exits, so it never lingers as a zombie, and keep the
        # Popen referenced until then (dropping a running Popen warns).
        threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()
        (work.path / "worker.pid").write_text(str(proc.pid))
        return proc.pid

    @staticmethod
    def pid(work: WorkDir) -> int | None:
        """The worker's pid, or ``None`` when none was launched."""
        try:
            return int((work.path / "worker.pid").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def alive(self, work: WorkDir) -> bool:
        """Whether the worker of ``work`` is still running."""
        proc = self._procs.get(str(work.path))
        if proc is not None:
            return proc.poll() is None
        pid = self.pid(work)
        if pid is None:
            return False
        proc_dir = Path(f"/proc/{pid}")
        if not proc_dir.exists():
            if sys.platform.startswith("linux"):
                return False
            try:  # pragma: no cover - non-Linux fallback
                os.kill(pid, 0)
            except OSError:
                return False
            return True
        try:
            stat = (proc_dir / "stat").read_text()
            cmdline = (proc_dir / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return False
        state = stat.rsplit(")", 1)[-1].split()[0]
        return state not in {"Z", "X"} and str(work.path) in cmdline

    def wait(self, work: WorkDir, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the worker to exit; whether it did."""
        import time

        deadline = time.monotonic() + timeout_s
        while self.alive(work):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def kill(self, work: WorkDir) -> None:
        """Kill the worker and its process group (no-op when it is gone)."""
        pid = self.pid(work)
        if pid is None or not self.alive(work):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        self.wait(work, 5.0)

    @contextlib.contextmanager
    def slot_lock(self) -> Iterator[None]:
        """Serialise slot accounting across processes sharing the data dir."""
        self.slots_dir.mkdir(parents=True, exist_ok=True)
        with (self.slots_dir / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def running_trainings(self) -> int:
        """Trainings holding a slot now (stale slot files are removed)."""
        count = 0
        for slot in self.slots_dir.glob("*.slot"):
            work = WorkDir(Path(slot.read_text().strip()))
            if self.alive(work):
                count += 1
            else:
                slot.unlink(missing_ok=True)
        return count

    def take_slot(self, work: WorkDir, *, limit: int, env: dict[str, str] | None = None) -> bool:
        """Launch ``work`` if fewer than ``limit`` trainings run; whether it launched."""
        with self.slot_lock():
            if self.running_trainings() >= limit:
                return False
            self.launch(work, env=env)
            (self.slots_dir / f"{work.path.parent.name}--{work.path.name}.slot").write_text(
                str(work.path)
            )
            return True
