"""Exact and near-duplicate detection on the normalised user turns, and the leakage check.

Exact: a 16-byte BLAKE2b digest of the normalised user text, so 100k keys cost a few MB.

Near-duplicates: Jaccard similarity of word 3-shingle sets, found with MinHash + LSH
banding so the work is linear in the records, not quadratic. Records are offered newest
first; one is a near-duplicate when a *kept* record shares an LSH bucket with it and their
exact shingle Jaccard reaches the threshold, so the most recent of a cluster survives.
Hashes are deterministic (BLAKE2b-seeded word hashes, fixed permutations), so the same logs
and config give the same dataset in every process, whatever ``PYTHONHASHSEED`` is.

Worst case is bounded: a record is verified against at most :data:`MAX_CANDIDATES` bucket
mates (templated prompts can put thousands in one bucket); beyond that it is kept.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from flywheel.domain.datasets.records import normalise_text

SHINGLE_WORDS = 3
NUM_PERM = 128
MAX_CANDIDATES = 64
_WORD_CACHE_LIMIT = 500_000

U64Array = npt.NDArray[np.uint64]


def prompt_key(user_text: str) -> bytes:
    """The exact-dedup key of a record's user turns."""
    return hashlib.blake2b(normalise_text(user_text).encode(), digest_size=16).digest()


def _lsh_shape(threshold: float) -> tuple[int, int]:
    """Bands × rows = NUM_PERM whose S-curve midpoint (1/b)^(1/r) is just below ``threshold``.

    Below, so that pairs at the threshold are found with high probability; the exact
    Jaccard check removes the extra candidates this lets in.
    """
    best = (NUM_PERM, 1)
    for rows in (1, 2, 4, 8, 16, 32):
        bands = NUM_PERM // rows
        if (1 / bands) ** (1 / rows) <= threshold * 0.9:
            best = (bands, rows)
    return best


class Shingler:
    """Word 3-shingle hashes of normalised text, as a sorted unique ``uint64`` array."""

    def __init__(self) -> None:
        self._words: dict[str, int] = {}

    def _word(self, word: str) -> int:
        value = self._words.get(word)
        if value is None:
            if len(self._words) >= _WORD_CACHE_LIMIT:
                self._words.clear()  # bounded memory; hashes are recomputed identically
            digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
            value = int.from_bytes(digest, "little")
            self._words[word] = value
        return value

    def shingles(self, text: str) -> U64Array:
        """Hashes of the text's word shingles (one shingle when it has fewer words)."""
        words = normalise_text(text).split()
        if not words:
            return np.zeros(0, dtype=np.uint64)
        hashes = np.fromiter((self._word(w) for w in words), dtype=np.uint64, count=len(words))
        if len(words) < SHINGLE_WORDS:
            combined = np.array([np.bitwise_xor.reduce(hashes * np.uint64(0x9E3779B97F4A7C15))])
        else:
            with np.errstate(over="ignore"):
                combined = hashes[: -(SHINGLE_WORDS - 1)].copy()
                for k in range(1, SHINGLE_WORDS):
                    stop = len(hashes) - (SHINGLE_WORDS - 1 - k)
                    combined = combined * np.uint64(0x100000001B3) ^ hashes[k:stop]
        return np.unique(combined)


def jaccard(a: U64Array, b: U64Array) -> float:
    """Exact Jaccard similarity of two sorted unique hash arrays."""
    if a.size == 0 and b.size == 0:
        return 1.0
    inter = np.intersect1d(a, b, assume_unique=True).size
    return inter / (a.size + b.size - inter)


class NearDuplicateIndex:
    """Streaming near-duplicate filter: offer texts newest first, keep the first of a cluster."""

    def __init__(self, threshold: float, *, seed: int = 0x5EED) -> None:
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self.bands, self.rows = _lsh_shape(threshold)
        rng = np.random.default_rng(seed)
        # Multiply-shift hashing (odd a, keep the high 32 bits) is a universal family: good
        # enough permutations for MinHash at numpy speed.
        self._a = rng.integers(0, 2**63, size=(NUM_PERM, 1), dtype=np.uint64) * 2 + 1
        self._b = rng.integers(0, 2**63, size=(NUM_PERM, 1), dtype=np.uint64)
        self._shingler = Shingler()
        self._buckets: dict[bytes, list[int]] = defaultdict(list)
        self._kept: list[U64Array] = []

    def _signature(self, shingles: U64Array) -> U64Array:
        values = (self._a * shingles[None, :] + self._b) >> np.uint64(32)
        signature: U64Array = values.min(axis=1)
        return signature

    def _band_keys(self, signature: U64Array) -> list[bytes]:
        raw = signature.tobytes()
        width = self.rows * 8
        return [bytes([i]) + raw[i * width : (i + 1) * width] for i in range(self.bands)]

    def find(self, text: str) -> int | None:
        """The kept record this text near-duplicates (its insertion number), or None."""
        return self._find(self._shingler.shingles(text))[0]

    def _find(self, shingles: U64Array) -> tuple[int | None, list[bytes]]:
        if shingles.size == 0:
            return None, []
        keys = self._band_keys(self._signature(shingles))
        checked: set[int] = set()
        for key in keys:
            for other in self._buckets.get(key, ()):
                if other in checked:
                    continue
                checked.add(other)
                if jaccard(shingles, self._kept[other]) >= self.threshold:
                    return other, keys
                if len(checked) >= MAX_CANDIDATES:
                    return None, keys
        return None, keys

    def add(self, text: str) -> int | None:
        """Keep ``text`` unless it near-duplicates a kept one; return that one's number, or None."""
        shingles = self._shingler.shingles(text)
        match, keys = self._find(shingles)
        if match is not None:
            return match
        self._insert(shingles, keys)
        return None

    def insert(self, text: str) -> int:
        """Keep ``text`` unconditionally; return its number."""
        shingles = self._shingler.shingles(text)
        keys = self._band_keys(self._signature(shingles)) if shingles.size else []
        return self._insert(shingles, keys)

    def _insert(self, shingles: U64Array, keys: list[bytes]) -> int:
        number = len(self._kept)
        self._kept.append(shingles)
        for key in keys:
            self._buckets[key].append(number)
        return number


@dataclass(frozen=True, slots=True)
class ContaminationHit:
    """An eval item whose prompt (or a near-duplicate of it) is also in train."""

    eval_position: int
    train_position: int
    kind: str  # "exact" | "near"


Triple = tuple[str, str, str]


def _word_triples(text: str) -> set[Triple] | None:
    """The text's word 3-shingles as strings (what :class:`Shingler` hashes), or None for a
    text under three words (hashed as one order-free shingle: no cheap equivalent)."""
    words = normalise_text(text).split()
    if len(words) < SHINGLE_WORDS:
        return None
    return set(zip(words, words[1:], words[2:], strict=False))


def _may_reach(triples: set[Triple] | None, indexed: set[Triple], threshold: float) -> bool:
    """Whether a text could reach Jaccard ``threshold`` with any indexed text.

    A match must share at least ``threshold × |shingles|`` of the text's shingles
    (J = |A ∩ B| / |A ∪ B| and |A ∪ B| ≥ |A|). A set intersection of word triples settles
    most train records at a tenth of the cost of hashing their shingles and MinHashing them.
    """
    if triples is None:
        return True
    return len(triples & indexed) >= threshold * len(triples)


def find_contamination(
    *,
    eval_items: Sequence[tuple[int, bytes, str]],
    train_items: Iterable[tuple[int, bytes, str]],
    near_threshold: float | None,
) -> list[ContaminationHit]:
    """Eval items whose normalised prompt, or a near-duplicate at ``near_threshold``, is in train.

    Items are ``(position, prompt_key, user_text)``. The eval side is indexed (it is small)
    and train is streamed through it, so the cost is linear in train.
    """
    by_key = {key: pos for pos, key, _ in eval_items}
    index = NearDuplicateIndex(near_threshold) if near_threshold is not None else None
    numbers: list[int] = []
    indexed: set[Triple] = set()
    if index is not None:
        for pos, _, text in eval_items:
            index.insert(text)
            numbers.append(pos)
            indexed |= _word_triples(text) or set()
    hits: dict[int, ContaminationHit] = {}
    for pos, key, text in train_items:
        if key in by_key and by_key[key] not in hits:
            hits[by_key[key]] = ContaminationHit(by_key[key], pos, "exact")
            continue
        if index is not None and _may_reach(_word_triples(text), indexed, index.threshold):
            match = index.find(text)
            if match is not None and numbers[match] not in hits:
                hits[numbers[match]] = ContaminationHit(numbers[match], pos, "near")
    return sorted(hits.values(), key=lambda h: h.eval_position)
