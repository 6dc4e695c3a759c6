"""Run the three fake NMP apps on free loopback ports in background threads (uvicorn)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import uvicorn
from fastapi import FastAPI

from tests.fake_nmp.datastore_app import create_datastore_app
from tests.fake_nmp.entity_app import create_entity_app
from tests.fake_nmp.nim_app import create_nim_app
from tests.fake_nmp.state import FakeNMP

START_TIMEOUT_S = 10.0


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # a background thread must not own signals
        return None


@dataclass
class _Running:
    server: _Server
    thread: threading.Thread
    sock: socket.socket
    url: str


@dataclass
class FakeNMPServer:
    """The fake NMP hosts N (entities, DMS, Customizer, Evaluator), D (Data Store), P (NIM)."""

    state: FakeNMP = field(default_factory=FakeNMP)
    _running: list[_Running] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return self._running[0].url

    @property
    def datastore_url(self) -> str:
        return self._running[1].url

    @property
    def nim_url(self) -> str:
        return self._running[2].url

    def start(self) -> FakeNMPServer:
        """Start N, D and P; return self once all three accept connections."""
        apps = (
            create_entity_app(self.state),
            create_datastore_app(self.state),
            create_nim_app(self.state),
        )
        try:
            for app in apps:
                self._running.append(_serve(app))
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every app that started (idempotent)."""
        for running in self._running:
            running.server.should_exit = True
        for running in self._running:
            running.thread.join(timeout=START_TIMEOUT_S)
            running.sock.close()
        self._running.clear()


def _serve(app: FastAPI) -> _Running:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", ws="none", loop="asyncio"
    )
    server = _Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"fake-nmp-{port}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(timeout=START_TIMEOUT_S)
            sock.close()
            raise RuntimeError(f"fake NMP app did not start on port {port}")
        time.sleep(0.01)
    return _Running(server, thread, sock, f"http://127.0.0.1:{port}")


@contextmanager
def run_fake_nmp(state: FakeNMP | None = None) -> Iterator[FakeNMPServer]:
    """Serve a fake NMP for the ``with`` block; yields the server (URLs and ``state``)."""
    server = FakeNMPServer(state or FakeNMP()).start()
    try:
        yield server
    finally:
        server.stop()
