"""The streaming part of the pipeline: pulled records in, clean rendered records out.

:class:`RecordCleaner` sees records newest first, one at a time, and keeps only what the
split needs in memory (:class:`CleanRecord`, ~100 bytes plus the user text); the rendered
file rows come back as bytes for the caller to store where it likes. Order per record:

1. :func:`~flywheel.domain.datasets.records.parse_record` (shape and quality reasons);
2. ``duplicate``: its normalised user turns equal a kept record's (so the newest is kept);
3. ``over_context_budget``: its SFT row (prompt, tools and answer) exceeds the context
   length of every candidate, counted with that candidate's counter;
4. ``near_duplicate``: Jaccard of word shingles with a kept record ≥ the threshold.

A record dropped at step 3 does not shadow older duplicates, because only kept records
enter the dedup indexes.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flywheel.domain.datasets.dedup import NearDuplicateIndex, prompt_key
from flywheel.domain.datasets.formats import RenderedRows, render_rows
from flywheel.domain.datasets.icl import TokenCounter, estimate_tokens
from flywheel.domain.datasets.records import DropReason, ParsedRecord, RecordParser


@dataclass(frozen=True, slots=True)
class CleanRecord:
    """What the split, ICL and leakage check need about a kept record (not its body)."""

    position: int  # among kept records, 0 = newest
    timestamp: int
    label: str
    tool_calling: bool
    prompt_key: bytes
    user_text: str
    sft_size: int


@dataclass(frozen=True, slots=True)
class Kept:
    """A kept record and its rendered rows (JSON bytes, no newline).

    The SFT row is complete; the eval row is kept in parts (:class:`RenderedRows`) because
    only ``eval_size`` records will need it: :attr:`eval_line` joins them.
    """

    record: CleanRecord
    rows: RenderedRows

    @property
    def sft_line(self) -> bytes:
        """The SFT (train / validation) row."""
        return self.rows.sft_line

    @property
    def eval_line(self) -> bytes:
        """The eval row."""
        return self.rows.eval_line


@dataclass
class StageCounts:
    """Counts at each stage, with reasons, and the time window seen."""

    pulled: int = 0
    drops: Counter[DropReason] = field(default_factory=Counter)
    kept: int = 0
    pulled_window: tuple[int, int] | None = None
    kept_window: tuple[int, int] | None = None

    @property
    def valid(self) -> int:
        """Records that passed the shape and quality checks."""
        later = (DropReason.duplicate, DropReason.near_duplicate, DropReason.over_context_budget)
        return self.pulled - sum(c for r, c in self.drops.items() if r not in later)

    @property
    def unique(self) -> int:
        """Valid records left after exact dedup."""
        return self.valid - self.drops[DropReason.duplicate]

    @property
    def within_budget(self) -> int:
        """Unique records that fit some candidate's context."""
        return self.unique - self.drops[DropReason.over_context_budget]

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form for the manifest and error messages."""
        return {
            "pulled": self.pulled,
            "valid": self.valid,
            "unique": self.unique,
            "within_budget": self.within_budget,
            "kept": self.kept,
            "dropped": {r.value: self.drops[r] for r in DropReason if self.drops[r]},
            "pulled_window_ms": list(self.pulled_window) if self.pulled_window else None,
            "kept_window_ms": list(self.kept_window) if self.kept_window else None,
        }


def _widen(window: tuple[int, int] | None, ts: int) -> tuple[int, int]:
    return (ts, ts) if window is None else (min(window[0], ts), max(window[1], ts))


class RecordCleaner:
    """Validate, filter, de-duplicate and render records offered newest first."""

    def __init__(
        self,
        *,
        parse_arguments: bool,
        context_budgets: Sequence[tuple[int, TokenCounter]] = (),
        near_duplicate_threshold: float | None = None,
    ) -> None:
        self.counts = StageCounts()
        self._parse_arguments = parse_arguments
        # Largest window first: most records fit it, so one count usually settles the check.
        self._budgets = sorted(context_budgets, key=lambda b: -b[0])
        self._seen: set[bytes] = set()
        self._parser = RecordParser()
        # One string per distinct label, not one per kept record (a workload has few).
        self._labels: dict[str, str] = {}
        self._near = (
            NearDuplicateIndex(near_duplicate_threshold) if near_duplicate_threshold else None
        )

    def _fits(self, sft_line: bytes) -> bool:
        if not self._budgets:
            return True
        text: str | None = None
        for context_length, counter in self._budgets:
            if counter is estimate_tokens:
                tokens = math.ceil(len(sft_line) / 3)
            else:
                text = text if text is not None else sft_line.decode()
                tokens = counter(text)
            if tokens <= context_length:
                return True
        return False

    def _drop(self, reason: DropReason) -> None:
        self.counts.drops[reason] += 1

    def describe(self) -> str:
        """One line of counts per stage, for error messages."""
        c = self.counts
        dropped = ", ".join(f"{r.value}={n}" for r, n in sorted(c.drops.items()) if n) or "none"
        return (
            f"pulled {c.pulled} → valid {c.valid} → unique {c.unique} → within context "
            f"{c.within_budget} → kept {c.kept} (dropped: {dropped})"
        )

    def offer(
        self, timestamp: int, request: Mapping[str, Any], response: Mapping[str, Any]
    ) -> Kept | None:
        """Check one record; return it rendered, or None (the reason is counted)."""
        counts = self.counts
        counts.pulled += 1
        window = counts.pulled_window
        # Records come newest first, so usually only the low end moves.
        if window is None or not window[0] <= timestamp <= window[1]:
            counts.pulled_window = _widen(window, timestamp)
        parsed = self._parser.parse(timestamp, request, response)
        if isinstance(parsed, DropReason):
            self._drop(parsed)
            return None
        key = prompt_key(parsed.user_text)
        if key in self._seen:
            self._drop(DropReason.duplicate)
            return None
        rows = render_rows(parsed, parse_arguments=self._parse_arguments)
        if not self._fits(rows.sft_line):
            self._drop(DropReason.over_context_budget)
            return None
        if self._near is not None and self._near.add(parsed.user_text) is not None:
            self._drop(DropReason.near_duplicate)
            return None
        self._seen.add(key)
        return self._keep(parsed, key, rows)

    def _keep(self, parsed: ParsedRecord, key: bytes, rows: RenderedRows) -> Kept:
        counts = self.counts
        record = CleanRecord(
            position=counts.kept,
            timestamp=parsed.timestamp,
            label=self._labels.setdefault(label := parsed.label, label),
            tool_calling=parsed.tool_calling,
            prompt_key=key,
            user_text=parsed.user_text,
            sft_size=len(rows.sft_line),
        )
        counts.kept += 1
        window = counts.kept_window
        if window is None or not window[0] <= parsed.timestamp <= window[1]:
            counts.kept_window = _widen(window, parsed.timestamp)
        return Kept(record=record, rows=rows)
