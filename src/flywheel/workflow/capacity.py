"""The GPU budget: a lease table shared by every worker, across all jobs.

A candidate holds a lease of ``candidate.gpus`` from before its deployment starts until it
is shut down. :meth:`CapacityLedger.acquire` is atomic (a Lua script on Redis; an
``IMMEDIATE`` transaction on SQLite) and idempotent per owner, so a step redone after a crash
never counts a candidate twice. Leases are released by the candidate's shutdown, by
cancellation, and — for owners whose job ended or vanished — by the sweeper, so a killed
worker cannot leak capacity.

Two backends: Redis (with ``REDIS_URL``, shared by every machine) and a SQLite file in the
data directory (embedded mode, one machine).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import redis

from flywheel.errors import StoreUnavailable


@dataclass(frozen=True, slots=True)
class Grant:
    """The answer to an acquire: granted or not, and the usage it saw."""

    granted: bool
    in_use: int
    budget: int


def owner_key(job_id: str, candidate: str) -> str:
    """The lease owner name of one candidate of one job."""
    return f"{job_id}/{candidate}"


class CapacityLedger(Protocol):
    """Leases of a shared GPU budget."""

    def acquire(self, owner: str, gpus: int, budget: int) -> Grant:
        """Take ``gpus`` for ``owner`` if they fit in ``budget`` (granted again if held)."""
        ...

    def release(self, owner: str) -> None:
        """Return an owner's lease (idempotent)."""
        ...

    def leases(self) -> dict[str, int]:
        """Every held lease: owner → GPUs."""
        ...


_ACQUIRE = """
local held = redis.call('HGET', KEYS[1], ARGV[1])
local used = 0
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do used = used + tonumber(v) end
if held then return {1, used} end
if used + tonumber(ARGV[2]) <= tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return {1, used + tonumber(ARGV[2])}
end
return {0, used}
"""


class RedisCapacity:
    """Leases in one Redis hash (owner → GPUs)."""

    def __init__(self, client: redis.Redis, *, key: str = "flywheel:gpu_leases") -> None:
        """Use ``client`` and the hash at ``key``."""
        self._client = client
        self._key = key
        self._script: Any = client.register_script(_ACQUIRE)

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "") -> RedisCapacity:
        """Connect to ``url`` (timeouts set, so a dead Redis fails fast)."""
        client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=10)
        return cls(client, key=f"{prefix}flywheel:gpu_leases")

    @contextmanager
    def _reachable(self) -> Iterator[None]:
        # Redis down or restarting is transient: the step retries it with backoff.
        try:
            yield
        except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError) as exc:
            raise StoreUnavailable(f"GPU lease table (Redis): {exc}") from exc

    def acquire(self, owner: str, gpus: int, budget: int) -> Grant:
        """Atomically grant ``gpus`` to ``owner`` if they fit."""
        with self._reachable():
            granted, used = self._script(keys=[self._key], args=[owner, gpus, budget])
        return Grant(bool(granted), int(used), budget)

    def release(self, owner: str) -> None:
        """Drop the lease."""
        with self._reachable():
            self._client.hdel(self._key, owner)

    def leases(self) -> dict[str, int]:
        """All leases."""
        with self._reachable():
            raw: dict[bytes, bytes] = self._client.hgetall(self._key)  # type: ignore[assignment]
        return {k.decode(): int(v) for k, v in raw.items()}


class SqliteCapacity:
    """Leases in a SQLite file (embedded mode: every worker process on one machine)."""

    def __init__(self, path: Path) -> None:
        """Open (and create) the lease table in ``path``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        with self._tx() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS gpu_leases "
                "(owner TEXT PRIMARY KEY, gpus INTEGER, at REAL)"
            )

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self._path, timeout=30, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

    def acquire(self, owner: str, gpus: int, budget: int) -> Grant:
        """Grant ``gpus`` to ``owner`` if they fit (one write transaction)."""
        with self._tx() as conn:
            used = int(conn.execute("SELECT COALESCE(SUM(gpus), 0) FROM gpu_leases").fetchone()[0])
            held = conn.execute("SELECT 1 FROM gpu_leases WHERE owner = ?", (owner,)).fetchone()
            if held:
                return Grant(True, used, budget)
            if used + gpus > budget:
                return Grant(False, used, budget)
            conn.execute(
                "INSERT INTO gpu_leases (owner, gpus, at) VALUES (?, ?, ?)",
                (owner, gpus, time.time()),
            )
            return Grant(True, used + gpus, budget)

    def release(self, owner: str) -> None:
        """Drop the lease."""
        with self._tx() as conn:
            conn.execute("DELETE FROM gpu_leases WHERE owner = ?", (owner,))

    def leases(self) -> dict[str, int]:
        """All leases."""
        with self._tx() as conn:
            rows = conn.execute("SELECT owner, gpus FROM gpu_leases").fetchall()
        return {str(owner): int(gpus) for owner, gpus in rows}
