"""API keys: generation, hashing, lookup, role checks, tenant scope and failed-auth limiting.

Keys are ``fw_`` + 32 random bytes (``secrets.token_urlsafe``). Only a SHA-256 hash is
stored. A plain fast hash is enough here, unlike for passwords: a 256-bit random key cannot
be guessed or brute-forced from its hash, so a slow KDF (bcrypt, argon2) would add latency
to every request and no security. It also lets the store look a key up by its hash.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from flywheel.domain.jobs import ApiKey, KeyId, Role
from flywheel.errors import FlywheelError, NotFound
from flywheel.stores.base import StateStore

KEY_PREFIX = "fw_"
_RANK = {Role.viewer: 0, Role.operator: 1, Role.admin: 2}


class Unauthenticated(FlywheelError):
    """No key, or a key that is unknown or revoked (the API answers 401)."""


class Forbidden(FlywheelError):
    """The key's role is below what the action needs (the API answers 403)."""


class TooManyFailures(FlywheelError):
    """Too many failed authentications from one client address (the API answers 429)."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"too many failed authentications; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: their role and the clients they may see (None: all)."""

    role: Role
    key_id: KeyId | None = None
    client_ids: frozenset[str] | None = None

    def has(self, role: Role) -> bool:
        """True when this principal's role includes ``role`` (admin ⊇ operator ⊇ viewer)."""
        return _RANK[self.role] >= _RANK[role]

    def require(self, role: Role) -> None:
        """Raise Forbidden unless this principal has ``role``."""
        if not self.has(role):
            raise Forbidden(
                f"this action needs the {role.value} role; the key is {self.role.value}"
            )

    def sees(self, client_id: str) -> bool:
        """True when this principal may see data of ``client_id``."""
        return self.client_ids is None or client_id in self.client_ids

    def check_client(self, client_id: str) -> None:
        """Raise NotFound (not Forbidden, so tenants cannot probe each other) when out of scope."""
        if not self.sees(client_id):
            raise NotFound(f"client {client_id!r} not found")


#: The caller when auth is disabled (single-user local runs).
ANONYMOUS_ADMIN = Principal(role=Role.admin)


def hash_key(key: str) -> str:
    """The stored form of a key: hex SHA-256 (see the module docstring for why that suffices)."""
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(
    store: StateStore,
    *,
    role: Role,
    name: str = "",
    client_ids: Iterable[str] | None = None,
) -> tuple[str, ApiKey]:
    """Generate and store a new key; return the plaintext (shown once) and the stored record."""
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    record = ApiKey(
        id=KeyId(f"key_{uuid.uuid4().hex[:16]}"),
        key_hash=hash_key(plaintext),
        role=role,
        name=name,
        client_ids=None if client_ids is None else sorted(set(client_ids)),
    )
    return plaintext, store.create_key(record)


def authenticate(store: StateStore, token: str | None) -> Principal:
    """Resolve a bearer token to a principal.

    Raises:
        Unauthenticated: no token, or no live key with its hash.
    """
    if not token:
        raise Unauthenticated("an API key is required: send 'Authorization: Bearer <key>'")
    if not token.startswith(KEY_PREFIX):
        raise Unauthenticated("the API key is malformed")
    key = store.find_key(hash_key(token))
    if key is None or key.revoked:
        raise Unauthenticated("the API key is unknown or revoked")
    scope = None if key.client_ids is None else frozenset(key.client_ids)
    return Principal(role=key.role, key_id=key.id, client_ids=scope)


class FailedAuthLimiter:
    """A token bucket per client address, drained by failed authentications.

    Each address may fail ``burst`` times at once, regaining one attempt every
    ``refill_s`` seconds; while its bucket is empty every attempt, even with a good key,
    is refused. State lives in this process only: with several API processes each keeps its
    own buckets, so the effective limit is per process (a shared limiter would need Redis).
    At most ``max_addresses`` buckets are kept, oldest dropped first, to bound memory.
    """

    def __init__(
        self, *, burst: int = 10, refill_s: float = 6.0, max_addresses: int = 10_000
    ) -> None:
        """Configure the bucket size, refill period and memory bound."""
        self._burst = float(burst)
        self._refill_s = refill_s
        self._max = max_addresses
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def _level(self, address: str, now: float) -> float:
        tokens, since = self._buckets.get(address, (self._burst, now))
        return min(self._burst, tokens + (now - since) / self._refill_s)

    def check(self, address: str) -> None:
        """Raise TooManyFailures while ``address`` has no attempts left."""
        now = time.monotonic()
        with self._lock:
            if address in self._buckets and self._level(address, now) < 1.0:
                missing = 1.0 - self._level(address, now)
                raise TooManyFailures(max(1, round(missing * self._refill_s)))

    def record_failure(self, address: str) -> None:
        """Take one attempt from ``address``'s bucket."""
        now = time.monotonic()
        with self._lock:
            self._buckets[address] = (max(0.0, self._level(address, now) - 1.0), now)
            self._buckets.move_to_end(address)
            while len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
