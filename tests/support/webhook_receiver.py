"""A loopback HTTP server that records webhook POSTs and answers scripted statuses.

Job-completion and promotion webhooks are tested against a real HTTP endpoint, not a mock of
our sender: it sees the exact bytes and headers (signature included) that a user's server would.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson


@dataclass
class Receiver:
    """What the server received, and what it answers: ``statuses`` in order, then ``default``."""

    url: str
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    default: int = 200

    def bodies(self) -> list[dict[str, Any]]:
        """Every request body, parsed as JSON, in arrival order."""
        return [orjson.loads(body) for _, body in self.requests]


@contextmanager
def serve_receiver(path: str, *, default: int = 200) -> Iterator[Receiver]:
    """Run a :class:`Receiver` on a free 127.0.0.1 port at ``path`` until the block ends."""
    box: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            recv = box[0]
            recv.requests.append((dict(self.headers.items()), body))
            status = recv.statuses.pop(0) if recv.statuses else recv.default
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box.append(Receiver(url=f"http://127.0.0.1:{server.server_address[1]}{path}", default=default))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield box[0]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
