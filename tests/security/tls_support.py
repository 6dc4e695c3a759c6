"""Real TLS on loopback for the security tests: a private CA, HTTPS apps, a TLS proxy.

``trustme`` makes a throwaway CA and a certificate for 127.0.0.1 signed by it, so clients
verify for real: with the CA bundle they connect, without it the handshake fails exactly as
it would against a service behind a company CA.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import trustme
import uvicorn
from fastapi import FastAPI

START_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class PrivateCA:
    """A CA bundle (what NMP_CA_BUNDLE & co. point at) and a server certificate it signed."""

    ca_file: Path
    server_cert_file: Path  # the server's key and certificate chain, PEM

    def server_context(self) -> ssl.SSLContext:
        """A server-side context presenting the certificate for 127.0.0.1."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self.server_cert_file))
        return context


def make_private_ca(directory: Path) -> PrivateCA:
    """Write a new CA and a 127.0.0.1/localhost certificate under ``directory``."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_file = directory / "private-ca.pem"
    server_file = directory / "server.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.private_key_and_cert_chain_pem.write_to_path(str(server_file))
    return PrivateCA(ca_file=ca_file, server_cert_file=server_file)


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # a background thread must not own signals
        return None


@contextmanager
def serve_https(app: FastAPI, ca: PrivateCA) -> Iterator[str]:
    """Serve ``app`` over HTTPS on a free loopback port; yield its ``https://`` URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level="critical",  # refused handshakes are what some tests provoke
        access_log=False,
        lifespan="off",
        ws="none",
        loop="asyncio",
        ssl_certfile=str(ca.server_cert_file),
    )
    server = _Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"HTTPS test server did not start on port {port}")
            time.sleep(0.01)
        yield f"https://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=START_TIMEOUT_S)
        sock.close()


class TlsProxy:
    """Terminates TLS on a loopback port and relays the plain bytes to ``target``.

    Puts a real certificate in front of a server that speaks only plain TCP (the noida-db
    Elasticsearch API, the shared Redis), so the clients' TLS settings are exercised end to
    end. A client that rejects the certificate just aborts its handshake.
    """

    def __init__(self, target: tuple[str, int], ca: PrivateCA) -> None:
        """Listen on a free port; relay to ``target`` once started."""
        self._target = target
        self._context = ca.server_context()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> TlsProxy:
        self._accepting.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._accepting.join(timeout=START_TIMEOUT_S)
        self._listener.close()
        with self._lock:
            sockets, threads = list(self._sockets), list(self._threads)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in threads:
            thread.join(timeout=START_TIMEOUT_S)

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                raw, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._track(raw)
            self._spawn(self._handle, raw)

    def _handle(self, raw: socket.socket) -> None:
        raw.settimeout(START_TIMEOUT_S)
        try:
            secure = self._context.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            return  # the client refused our certificate (or went away)
        self._track(secure)
        secure.settimeout(None)
        try:
            upstream = socket.create_connection(self._target, timeout=START_TIMEOUT_S)
        except OSError:
            return
        upstream.settimeout(None)
        self._track(upstream)
        self._spawn(self._pump, upstream, secure)
        self._pump(secure, upstream)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except (OSError, ssl.SSLError):
            pass
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
