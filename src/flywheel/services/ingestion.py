"""Ingest production log records: validate each, store the valid ones, report the rest.

One engine serves every way in: ``flywheel logs load`` streams a file through
:func:`ingest_lines`, ``POST /api/logs`` hands its body to :func:`ingest_payload`, and the
application logger posts NDJSON to that endpoint (or writes to a store directly). A bad
record never costs the good ones around it: each is validated on its own and rejected with
its line or index, the field and the reason, while valid records are written in batches; a
record the store itself refuses (say, an Elasticsearch index whose mapping predates a field)
is reported the same way, and the records around it are still written.

Memory stays bounded by ``batch_size`` records and ``max_line_bytes`` per line, never by the
size of the input: :func:`iter_lines` reads a file line by line and cuts an oversized line
short (it is rejected unparsed, and the rest of it skipped).
"""

from __future__ import annotations

import io
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from flywheel.domain.log_validation import Accepted, RecordError, validate_log_record
from flywheel.errors import FlywheelError, ValidationFailed
from flywheel.stores.base import LogStore

DEFAULT_MAX_LINE_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_PAYLOAD_BYTES = 50 * 1024 * 1024
DEFAULT_BATCH_SIZE = 500
#: Rejections beyond this are counted but their details are not kept.
MAX_REPORTED_ERRORS = 1000
_PROGRESS_EVERY = 1000
_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_LEADING_SPACE = re.compile(rb"[ \t\r\n]*")

ProgressCallback = Callable[["IngestReport"], None]


class LineReader(Protocol):
    """A binary stream that reads lines (a file opened ``rb``, ``GzipFile``, ``BytesIO``)."""

    def readline(self, size: int | None = -1, /) -> bytes: ...


class PayloadTooLarge(FlywheelError):
    """The request body exceeds the ingestion size limit (the API answers 413)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"request body is {size} bytes, over the {limit}-byte limit; split it into "
            "smaller batches or load the file with `flywheel logs load`"
        )
        self.size = size
        self.limit = limit


@dataclass
class IngestReport:
    """What one ingestion did: counts, normalisations and the per-record errors.

    ``errors`` keeps the first ``max_errors`` rejections; ``rejected`` counts them all.
    ``timestamp_formats`` counts how timestamps were written (``epoch_s`` and ``iso8601``
    ones were converted to epoch milliseconds).
    """

    accepted: int = 0
    rejected: int = 0
    written: int = 0
    blank_lines: int = 0
    bytes_read: int = 0
    ids_overridden: int = 0
    errors: list[RecordError] = field(default_factory=list)
    max_errors: int = MAX_REPORTED_ERRORS
    timestamp_formats: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    workloads: Counter[tuple[str, str]] = field(default_factory=Counter)
    ignored_fields: Counter[str] = field(default_factory=Counter)
    message: str = ""

    @property
    def seen(self) -> int:
        """Records looked at (blank lines excluded)."""
        return self.accepted + self.rejected

    @property
    def errors_truncated(self) -> bool:
        """True when more records were rejected than ``errors`` lists."""
        return self.rejected > len(self.errors)

    def add_error(self, error: RecordError) -> None:
        """Count a rejection, keeping its details while under the cap."""
        self.rejected += 1
        if len(self.errors) < self.max_errors:
            self.errors.append(error)

    def add_accepted(self, result: Accepted) -> None:
        """Count an accepted record and what was normalised on it."""
        self._tally(result, +1)

    def retract_accepted(self, result: Accepted) -> None:
        """Undo :meth:`add_accepted` for a record the store then refused.

        The caller counts the refusal with :meth:`add_error`, so ``seen`` stays the same and
        the per-kind and per-workload counts only ever describe records that were kept.
        """
        self._tally(result, -1)

    def _tally(self, result: Accepted, step: int) -> None:
        record = result.record
        self.accepted += step
        self.ids_overridden += step * result.ids_overridden
        _bump(self.kinds, record.kind.value, step)
        _bump(self.workloads, (record.client_id, record.workload_id), step)
        _bump(self.timestamp_formats, result.timestamp_format.value, step)
        for name in result.ignored_fields:
            _bump(self.ignored_fields, name, step)

    def normalisation_notes(self) -> list[str]:
        """Sentences telling the user what was converted or dropped."""
        notes: list[str] = []
        converted = {
            "epoch_s": "epoch seconds",
            "iso8601": "ISO-8601 strings",
        }
        for key, label in converted.items():
            if self.timestamp_formats[key]:
                notes.append(
                    f"{self.timestamp_formats[key]} timestamps were {label}; stored as epoch ms"
                )
        if self.ids_overridden:
            notes.append(f"{self.ids_overridden} records had their ids replaced by the flags")
        if self.ignored_fields:
            names = ", ".join(sorted(self.ignored_fields)[:10])
            notes.append(f"unknown fields were dropped: {names}")
        return notes

    def summary(self) -> str:
        """One line for humans."""
        if self.message:
            return self.message
        return f"accepted {self.accepted} of {self.seen} records ({self.rejected} rejected)"

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (the body of the ``POST /api/logs`` response)."""
        return {
            "accepted": self.accepted,
            "rejected": self.rejected,
            "written": self.written,
            "blank_lines": self.blank_lines,
            "bytes_read": self.bytes_read,
            "message": self.summary(),
            "notes": self.normalisation_notes(),
            "timestamp_formats": dict(self.timestamp_formats),
            "kinds": dict(self.kinds),
            "workloads": [
                {"client_id": c, "workload_id": w, "count": n}
                for (c, w), n in sorted(self.workloads.items())
            ],
            "ids_overridden": self.ids_overridden,
            "ignored_fields": dict(self.ignored_fields),
            "errors": [e.to_dict() for e in self.errors],
            "errors_truncated": self.errors_truncated,
        }


def _bump(counter: Counter[Any], key: object, step: int) -> None:
    """Add ``step`` to a count, dropping keys that fall to zero (they would show as 0s)."""
    counter[key] += step
    if counter[key] <= 0:
        del counter[key]


@dataclass(frozen=True, slots=True)
class _Pending:
    """An accepted record waiting in the batch, with where it came from in the input."""

    result: Accepted
    index: int
    line: int | None


class _Ingestor:
    """Validates records one by one and writes accepted ones in batches."""

    def __init__(
        self,
        *,
        store: LogStore,
        client_id: str | None,
        workload_id: str | None,
        batch_size: int,
        now_ms: int | None,
        report: IngestReport,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.store = store
        self.client_id = client_id
        self.workload_id = workload_id
        self.batch_size = batch_size
        self.now_ms = now_ms
        self.report = report
        self.batch: list[_Pending] = []

    def add(self, raw: object, *, index: int, line: int | None) -> None:
        result = validate_log_record(
            raw,
            index=index,
            line=line,
            client_id=self.client_id,
            workload_id=self.workload_id,
            now_ms=self.now_ms,
        )
        if isinstance(result, RecordError):
            self.report.add_error(result)
            return
        self.report.add_accepted(result)
        self.batch.append(_Pending(result, index, line))
        if len(self.batch) >= self.batch_size:
            self.flush()

    def reject(self, *, index: int, line: int | None, reason: str) -> None:
        self.report.add_error(RecordError(index=index, line=line, field="", reason=reason))

    def flush(self) -> None:
        """Write the batch; records the store refuses become per-record errors.

        A store that refuses part of a batch (Elasticsearch: a mapping conflict) raises
        ValidationFailed naming the refused positions and has written the rest, so the load
        goes on with the next batch. StoreUnavailable (nothing can be written now) and a
        refusal that names no position propagate: the caller retries or reports the outage.
        """
        if not self.batch:
            return
        batch, self.batch = self.batch, []
        try:
            self.report.written += self.store.write([p.result.record for p in batch])
        except ValidationFailed as exc:
            refused = _refused_positions(exc, len(batch))
            if refused is None:
                raise
            for position, (field_name, reason) in sorted(refused.items()):
                pending = batch[position]
                self.report.retract_accepted(pending.result)
                self.report.add_error(
                    RecordError(
                        index=pending.index,
                        line=pending.line,
                        field=field_name,
                        reason=f"the log store refused it: {reason}",
                    )
                )
            self.report.written += len(batch) - len(refused)


def _refused_positions(exc: ValidationFailed, size: int) -> dict[int, tuple[str, str]] | None:
    """Map a partial write refusal to ``{position: (field, reason)}``.

    Stores locate each refused record as ``loc = ["records", position, field?]`` (see
    :meth:`flywheel.stores.logs_elastic.ElasticLogStore.write`). None when any error lacks
    such a position: then it is unknown which records were written, and the error stands.
    """
    refused: dict[int, tuple[str, str]] = {}
    for error in exc.errors:
        loc = error.get("loc") or []
        if len(loc) < 2 or loc[0] != "records" or not isinstance(loc[1], int):
            return None
        if not 0 <= loc[1] < size:
            return None
        field_name = ".".join(str(part) for part in loc[2:])
        refused[loc[1]] = (field_name, str(error.get("msg", exc)))
    return refused or None


def iter_lines(
    stream: LineReader, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> Iterator[bytes]:
    """Yield the lines of a binary stream, cutting any line over ``max_line_bytes`` short.

    An oversized line is yielded as its first ``max_line_bytes + 1`` bytes (so
    :func:`ingest_lines` rejects it by length) and the rest of it is read and discarded,
    so one runaway line never has to fit in memory.
    """
    limit = max_line_bytes + 1
    while True:
        chunk = stream.readline(limit)
        if not chunk:
            return
        if len(chunk) == limit and not chunk.endswith(b"\n"):
            while (rest := stream.readline(64 * 1024)) and not rest.endswith(b"\n"):
                pass
        yield chunk


def ingest_lines(
    lines: Iterable[bytes],
    *,
    store: LogStore,
    client_id: str | None = None,
    workload_id: str | None = None,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: ProgressCallback | None = None,
    report: IngestReport | None = None,
    now_ms: int | None = None,
) -> IngestReport:
    """Validate and store NDJSON lines, streaming; return the report.

    ``client_id`` / ``workload_id`` override every record's ids. ``on_progress`` gets the
    live report every thousand lines and at the end. Records the store refuses (a mapping
    conflict) are reported like invalid ones and the load goes on; when the store is
    unavailable its StoreUnavailable propagates, so pass your own ``report`` to keep the
    counts made before it failed.
    """
    report = report if report is not None else IngestReport()
    ingestor = _Ingestor(
        store=store,
        client_id=client_id,
        workload_id=workload_id,
        batch_size=batch_size,
        now_ms=now_ms,
        report=report,
    )
    index = 0
    for line_no, raw in enumerate(lines, start=1):
        report.bytes_read += len(raw)
        data = raw
        if line_no == 1:
            if data.startswith(_UTF16_BOMS):
                report.message = "input is UTF-16 encoded; re-encode it as UTF-8 and load again"
                ingestor.reject(index=0, line=1, reason=report.message)
                break
            data = data.removeprefix(_UTF8_BOM)
        data = data.rstrip(b"\r\n")
        if len(data) > max_line_bytes:
            ingestor.reject(
                index=index,
                line=line_no,
                reason=f"line is longer than {max_line_bytes} bytes; it was skipped unparsed",
            )
            index += 1
        elif not data.strip():
            report.blank_lines += 1
        else:
            parsed, problem = _parse(data, what="line")
            if problem is not None:
                ingestor.reject(index=index, line=line_no, reason=problem)
            else:
                ingestor.add(parsed, index=index, line=line_no)
            index += 1
        if on_progress is not None and line_no % _PROGRESS_EVERY == 0:
            on_progress(report)
    ingestor.flush()
    if not report.message and report.seen == 0:
        report.message = "input is empty: no records found"
    if on_progress is not None:
        on_progress(report)
    return report


def ingest_payload(
    body: bytes,
    content_type: str | None = None,
    *,
    store: LogStore,
    client_id: str | None = None,
    workload_id: str | None = None,
    max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    batch_size: int = DEFAULT_BATCH_SIZE,
    now_ms: int | None = None,
) -> IngestReport:
    """Validate and store a request body: a JSON array, one JSON object, or NDJSON.

    The first non-blank byte decides: ``[`` is a JSON array; ``{`` is one object when the
    whole body parses as one (and ``content_type`` is not an NDJSON type), else NDJSON.

    Raises:
        PayloadTooLarge: the body is over ``max_bytes``.
        ValidationFailed: a JSON-array body is not valid JSON (no record can be told apart).
    """
    if len(body) > max_bytes:
        raise PayloadTooLarge(len(body), max_bytes)
    media = (content_type or "").split(";")[0].strip().lower()
    view = memoryview(body)
    if body.startswith(_UTF8_BOM):
        view = view[len(_UTF8_BOM) :]
    match = _LEADING_SPACE.match(view)
    start = match.end() if match else 0
    first = view[start : start + 1].tobytes()
    if first == b"[" or (first == b"{" and "ndjson" not in media and "jsonl" not in media):
        parsed, problem = _parse(view[start:], what="body")
        if first == b"[" and problem is not None:
            raise ValidationFailed(
                f"{problem}; send a JSON array of records or NDJSON (one record per line)",
                errors=[{"loc": ["body"], "msg": problem}],
            )
        if problem is None:
            report = IngestReport(bytes_read=len(body))
            ingestor = _Ingestor(
                store=store,
                client_id=client_id,
                workload_id=workload_id,
                batch_size=batch_size,
                now_ms=now_ms,
                report=report,
            )
            for index, value in enumerate(parsed if isinstance(parsed, list) else [parsed]):
                ingestor.add(value, index=index, line=None)
            ingestor.flush()
            if report.seen == 0:
                report.message = "request body is an empty array: no records found"
            return report
    report = ingest_lines(
        iter_lines(io.BytesIO(body), max_line_bytes=max_line_bytes),
        store=store,
        client_id=client_id,
        workload_id=workload_id,
        max_line_bytes=max_line_bytes,
        batch_size=batch_size,
        now_ms=now_ms,
    )
    if report.seen == 0 and report.message.startswith("input is empty"):
        report.message = "request body is empty: no records found"
    return report


def _parse(data: bytes | memoryview, *, what: str) -> tuple[object, str | None]:
    """Parse JSON; on failure say whether the bytes were not UTF-8 or not JSON."""
    try:
        return orjson.loads(data), None
    except orjson.JSONDecodeError as exc:
        try:
            bytes(data).decode("utf-8")
        except UnicodeDecodeError as bad:
            byte = bytes(data)[bad.start]
            return None, (
                f"{what} is not valid UTF-8 (byte 0x{byte:02x} at offset {bad.start}); "
                "re-encode the input as UTF-8"
            )
        return None, f"{what} is not valid JSON ({exc})"
