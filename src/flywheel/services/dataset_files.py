"""Files of the dataset build: a scratch spill of rendered rows, and hashed JSONL writers.

Kept apart from the use case so that :mod:`flywheel.services.datasets` reads as the
pipeline; everything here is plain file I/O.
"""

from __future__ import annotations

import hashlib
import os
from array import array
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt
import orjson


@dataclass(frozen=True)
class DatasetFile:
    """One written file."""

    path: Path
    records: int
    bytes: int
    sha256: str


class SpillFile:
    """Rendered rows of kept records in one scratch file, read back by position."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._out: IO[bytes] = path.open("wb", buffering=1 << 20)
        self._eval = array("I")
        self._sft = array("I")
        self._offsets: npt.NDArray[np.int64] | None = None
        self._in: IO[bytes] | None = None

    def add(self, eval_line: bytes, sft_line: bytes) -> None:
        self._out.write(eval_line)
        self._out.write(sft_line)
        self._eval.append(len(eval_line))
        self._sft.append(len(sft_line))

    def finish(self) -> None:
        self._out.close()
        sizes = np.asarray(self._eval, dtype=np.int64) + np.asarray(self._sft, dtype=np.int64)
        self._offsets = np.concatenate(([0], np.cumsum(sizes)[:-1])) if len(sizes) else sizes
        self._in = self.path.open("rb")

    def rows(self) -> Iterator[tuple[bytes, bytes]]:
        """Every record's (eval row, SFT row), in position order, read sequentially."""
        with self.path.open("rb", buffering=1 << 20) as f:
            for e, s in zip(self._eval, self._sft, strict=True):
                yield f.read(e), f.read(s)

    def _read(self, position: int, *, sft: bool) -> bytes:
        if self._in is None or self._offsets is None:
            raise RuntimeError("SpillFile.finish() must run before reads")
        start = int(self._offsets[position]) + (self._eval[position] if sft else 0)
        self._in.seek(start)
        return self._in.read(self._sft[position] if sft else self._eval[position])

    def eval_row(self, position: int) -> Mapping[str, Any]:
        row: Mapping[str, Any] = orjson.loads(self._read(position, sft=False))
        return row

    def sft_row(self, position: int) -> Mapping[str, Any]:
        row: Mapping[str, Any] = orjson.loads(self._read(position, sft=True))
        return row

    def close(self) -> None:
        self._out.close()
        if self._in is not None:
            self._in.close()
        self.path.unlink(missing_ok=True)


class JsonlWriter:
    """A JSONL file written under a temporary name, hashed as it goes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._tmp = path.with_name(path.name + ".partial")
        self._f: IO[bytes] = self._tmp.open("wb", buffering=1 << 20)
        self._hash = hashlib.sha256()
        self.records = 0
        self.bytes = 0

    def write(self, row: bytes) -> None:
        line = row + b"\n"
        self._f.write(line)
        self._hash.update(line)
        self.records += 1
        self.bytes += len(line)

    def commit(self) -> DatasetFile:
        self._f.close()
        os.replace(self._tmp, self.path)
        return DatasetFile(self.path, self.records, self.bytes, self._hash.hexdigest())

    def abort(self) -> None:
        self._f.close()
        self._tmp.unlink(missing_ok=True)
