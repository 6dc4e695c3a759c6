"""Serve a MongoDB (mongoeco) over the wire protocol until terminated.

Runs under the mongoeco venv (Python >= 3.13), never imported by the test suite.
Usage: python mongoeco_launcher.py PORT_FILE [--port N] [--sqlite PATH]. By default it binds
a free port itself (no race with another process picking the same one) and writes it to
PORT_FILE once it accepts connections. ``--port`` binds that port instead (to restart a
server where its clients expect it); ``--sqlite`` keeps the data in that SQLite file instead
of in memory, so it survives a restart.
"""

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from mongoeco.engines import MemoryEngine, SQLiteEngine
from mongoeco.wire import AsyncMongoEcoProxyServer

try:
    import bson  # noqa: F401 -- the wire codec needs it; without it every request is dropped
except ImportError:
    sys.exit("mongoeco's wire server needs pymongo: pip install 'mongoeco[wire]' in its venv")


def publish_port(port_file: Path, port: int) -> None:
    """Write the port atomically, so the waiting test never reads half a number."""
    tmp = port_file.with_suffix(".tmp")
    tmp.write_text(str(port))
    tmp.replace(port_file)


async def serve(port_file: Path, port: int, sqlite: str | None) -> None:
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    engine = MemoryEngine() if sqlite is None else SQLiteEngine(sqlite)
    async with AsyncMongoEcoProxyServer(engine=engine, port=port) as server:
        publish_port(port_file, server.address.port)
        await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("port_file", type=Path)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--sqlite", default=None)
    args = parser.parse_args()
    asyncio.run(serve(args.port_file, args.port, args.sqlite))
