"""Files of the dataset build: a scratch spill of rendered rows, and hashed JSONL writers.

Kept apart from the use case so that :mod:`flywheel.services.datasets` reads as the
pipeline; everything here is plain file I/O.
"""

from __future__ import annotations

import hashlib
import os
from array import array
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt
import orjson

from flywheel.domain.datasets.formats import RenderedRows, eval_messages_of, join_eval_line


@dataclass(frozen=True)
class DatasetFile:
    """One written file."""

    path: Path
    records: int
    bytes: int
    sha256: str


#: Distinct request settings (``{"model":..,"tools":..}``) kept in memory for the eval rows;
#: beyond this, a record's settings are spilled with it (a workload rarely has more).
SETTINGS_LIMIT = 4096
_INLINE = 0xFFFFFFFF
_FIELDS = 6
#: Bytes read at once when copying runs of SFT rows.
COPY_CHUNK = 1 << 22


class SpillFile:
    """Rendered rows of kept records in scratch files, read back by position.

    Two files: the SFT rows, one per line, so that runs of train or validation rows are
    copied to their file as blocks; and beside them, what the eval row needs beyond the SFT
    row (its response, and its messages or request settings when they cannot be shared).
    Only ``eval_size`` eval rows are ever assembled, so most records spill ~10 % more than
    their SFT row instead of two full rows.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._side_path = path.with_name(path.name + ".eval")
        self._out: IO[bytes] = path.open("wb", buffering=1 << 20)
        self._side: IO[bytes] = self._side_path.open("wb", buffering=1 << 20)
        # Per record, _FIELDS numbers: SFT row length (without its newline),
        # RenderedRows.history_len, response length, explicit eval messages length (0: derived
        # from the SFT row), settings index (or _INLINE), spilled settings length.
        self._meta = array("I")
        self._settings: dict[bytes, int] = {}
        self._settings_list: list[bytes] = []
        self._sft_at: npt.NDArray[np.int64] | None = None
        self._side_at: npt.NDArray[np.int64] | None = None
        self._fd: int | None = None
        self._side_fd: int | None = None

    def add(self, rows: RenderedRows) -> None:
        """Append one kept record's rows."""
        sft = rows.sft_line
        self._out.write(sft + b"\n")
        settings = rows.settings_json
        sid = self._settings.get(settings)
        if sid is None and len(self._settings_list) < SETTINGS_LIMIT:
            sid = self._settings[settings] = len(self._settings_list)
            self._settings_list.append(settings)
        side = rows.response_json
        n_response = len(side)
        n_messages = 0
        if rows.eval_messages is not None:
            side += rows.eval_messages
            n_messages = len(rows.eval_messages)
        if sid is None:
            side += settings
            self._meta.extend(
                (len(sft), rows.history_len, n_response, n_messages, _INLINE, len(settings))
            )
        else:
            self._meta.extend((len(sft), rows.history_len, n_response, n_messages, sid, 0))
        self._side.write(side)

    def __len__(self) -> int:
        return len(self._meta) // _FIELDS

    def finish(self) -> None:
        """End writing; reads may start."""
        self._out.close()
        self._side.close()
        meta = np.frombuffer(self._meta, dtype=np.uint32).reshape(-1, _FIELDS).astype(np.int64)
        sft = meta[:, 0] + 1
        side = meta[:, 2] + meta[:, 3] + meta[:, 5]
        self._sft_at = np.concatenate(([0], np.cumsum(sft))).astype(np.int64)
        self._side_at = np.concatenate(([0], np.cumsum(side))).astype(np.int64)
        self._fd = os.open(self.path, os.O_RDONLY)
        self._side_fd = os.open(self._side_path, os.O_RDONLY)

    def _field(self, position: int, field: int) -> int:
        return self._meta[position * _FIELDS + field]

    def _offsets(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], int, int]:
        if self._sft_at is None or self._side_at is None or self._fd is None:
            raise RuntimeError("SpillFile.finish() must run before reads")
        assert self._side_fd is not None
        return self._sft_at, self._side_at, self._fd, self._side_fd

    def sft_lines(self, start: int, stop: int) -> Iterator[bytes]:
        """The SFT rows of positions ``start`` to ``stop`` (exclusive) as newline-terminated
        JSONL, in blocks of at most :data:`COPY_CHUNK` bytes cut anywhere."""
        sft_at, _, fd, _ = self._offsets()
        at, end = int(sft_at[start]), int(sft_at[stop])
        while at < end:
            block = os.pread(fd, min(COPY_CHUNK, end - at), at)
            if not block:
                raise RuntimeError(f"spill file {self.path} is shorter than written")
            at += len(block)
            yield block

    def sft_line(self, position: int) -> bytes:
        """One record's SFT row (no newline)."""
        sft_at, _, fd, _ = self._offsets()
        return os.pread(fd, self._field(position, 0), int(sft_at[position]))

    def eval_line(self, position: int) -> bytes:
        """One record's eval row (no newline), byte for byte what ``formats.eval_line`` gives."""
        _, side_at, _, side_fd = self._offsets()
        side = os.pread(
            side_fd, int(side_at[position + 1] - side_at[position]), int(side_at[position])
        )
        n_response, n_messages = self._field(position, 2), self._field(position, 3)
        response = side[:n_response]
        explicit = side[n_response : n_response + n_messages] if n_messages else None
        sid = self._field(position, 4)
        settings = side[n_response + n_messages :] if sid == _INLINE else self._settings_list[sid]
        messages = eval_messages_of(
            self.sft_line(position) if explicit is None else b"", self._field(position, 1), explicit
        )
        return join_eval_line(settings, messages, response)

    def eval_row(self, position: int) -> Mapping[str, Any]:
        """One record's eval row, parsed."""
        row: Mapping[str, Any] = orjson.loads(self.eval_line(position))
        return row

    def sft_row(self, position: int) -> Mapping[str, Any]:
        """One record's SFT row, parsed."""
        row: Mapping[str, Any] = orjson.loads(self.sft_line(position))
        return row

    def close(self) -> None:
        """Close and delete the scratch files."""
        self._out.close()
        self._side.close()
        for fd in (self._fd, self._side_fd):
            if fd is not None:
                os.close(fd)
        self._fd = self._side_fd = None
        self.path.unlink(missing_ok=True)
        self._side_path.unlink(missing_ok=True)


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

    def write_rows(self, blocks: Iterable[bytes], records: int) -> None:
        """Append ``records`` rows given as newline-terminated JSONL cut into blocks."""
        for block in blocks:
            self._f.write(block)
            self._hash.update(block)
            self.bytes += len(block)
        self.records += records

    def commit(self) -> DatasetFile:
        self._f.close()
        os.replace(self._tmp, self.path)
        return DatasetFile(self.path, self.records, self.bytes, self._hash.hexdigest())

    def abort(self) -> None:
        self._f.close()
        self._tmp.unlink(missing_ok=True)
