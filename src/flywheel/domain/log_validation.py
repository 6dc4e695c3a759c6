"""Validate one raw log record (a parsed JSON value) into a stored record or a reason.

:func:`validate_log_record` never raises: every problem becomes a :class:`RecordError` that
names the record (index and line), the dotted field path and the fix, so ingestion can keep
every valid record of a batch and report the others. The first problem found is reported;
checks run ids → timestamp → body, so a systematic problem shows on every line.

Kind is decided by an explicit ``kind`` field, else by the fields present (``request`` /
``response`` → chat, ``query`` / ``retrieved`` → retrieval). Timestamps may be epoch
milliseconds, epoch seconds or ISO-8601; they are stored as milliseconds and the
:class:`Accepted` result says which form was read, so reports can tell the user.

Unknown top-level fields are dropped, not rejected (the stored classes forbid extras, and
losing an application's extra metadata is better than losing its record); the result lists
them so the report can say so.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from flywheel.domain.chat_shapes import (
    InvalidField,
    check_chat_request,
    check_chat_response,
    is_number,
    require_object,
    require_string,
    type_name,
)
from flywheel.domain.logs import ID_PATTERN, ChatLog, LogKind, RetrievalLog, RetrievedPassage

#: Epoch values below this are read as seconds (1e11 s is the year 5138; 1e11 ms is 1973).
SECONDS_THRESHOLD = 100_000_000_000
#: Timestamps may be at most this far in the future (clock skew between hosts).
MAX_FUTURE_MS = 24 * 3600 * 1000

_ID_RE = re.compile(ID_PATTERN)
_COMMON_FIELDS = frozenset({"kind", "client_id", "workload_id", "timestamp"})
_CHAT_FIELDS = frozenset({"request", "response"})
_RETRIEVAL_FIELDS = frozenset({"query", "retrieved", "used_doc_ids", "clicked_doc_ids", "feedback"})
_PASSAGE_FIELDS = frozenset(RetrievedPassage.model_fields)


class TimestampFormat(StrEnum):
    """How a record's timestamp was written before normalisation to epoch milliseconds."""

    epoch_ms = "epoch_ms"
    epoch_s = "epoch_s"
    iso8601 = "iso8601"


@dataclass(frozen=True, slots=True)
class TimestampNote:
    """A timestamp that was not already epoch milliseconds, and what it became."""

    source: TimestampFormat
    original: str | int | float
    millis: int


@dataclass(frozen=True, slots=True)
class RecordError:
    """Why one record was rejected.

    ``index`` is the 0-based position among the batch's records; ``line`` the 1-based line of
    a file or NDJSON body (None for a JSON array). ``field`` is a dotted path such as
    ``request.messages[2].role`` (empty when the record as a whole is at fault).
    """

    index: int
    line: int | None
    field: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form for reports and API responses."""
        return {"index": self.index, "line": self.line, "field": self.field, "reason": self.reason}

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line is not None else f"record {self.index}"
        return f"{where}: {self.field or 'record'}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Accepted:
    """A valid record ready to store, with notes on what was normalised or dropped."""

    record: ChatLog | RetrievalLog
    timestamp_format: TimestampFormat
    timestamp_note: TimestampNote | None = None
    ignored_fields: tuple[str, ...] = ()
    ids_overridden: bool = False


def validate_log_record(
    raw: object,
    *,
    index: int = 0,
    line: int | None = None,
    client_id: str | None = None,
    workload_id: str | None = None,
    now_ms: int | None = None,
) -> Accepted | RecordError:
    """Validate one parsed JSON value as a chat or retrieval log record.

    ``client_id`` / ``workload_id``, when given, override the record's own ids (the CLI's
    ``--client-id`` and ``--workload-id``); a record without ids needs them. ``now_ms`` fixes
    "now" for the future-timestamp check (tests); it defaults to the wall clock.
    """
    try:
        return _validate(raw, client_id=client_id, workload_id=workload_id, now_ms=now_ms)
    except InvalidField as exc:
        return RecordError(index=index, line=line, field=exc.field, reason=exc.reason)
    except ValidationError as exc:  # a stored-model rule the checks above did not cover
        first = exc.errors()[0]
        loc = ".".join(str(part) for part in first["loc"])
        return RecordError(index=index, line=line, field=loc, reason=first["msg"])
    except (RecursionError, MemoryError, ValueError, TypeError, OverflowError) as exc:
        # A pathological value (absurd nesting, huge numbers) must not stop a whole batch.
        return RecordError(
            index=index,
            line=line,
            field="",
            reason=f"record could not be checked ({type(exc).__name__})",
        )


def normalise_timestamp(value: object, *, now_ms: int | None = None) -> tuple[int, TimestampFormat]:
    """Return ``value`` as epoch milliseconds and the format it was read as.

    Raises:
        InvalidField: not a number or ISO-8601 string, negative, or more than a day ahead.
    """
    if isinstance(value, bool) or value is None:
        raise InvalidField("timestamp", f"must be epoch milliseconds, got {type_name(value)}")
    if isinstance(value, int | float):
        if not is_number(value):
            raise InvalidField("timestamp", "must be a finite number")
        if value < 0:
            raise InvalidField("timestamp", f"{value} is negative; use Unix epoch milliseconds")
        if value < SECONDS_THRESHOLD:
            millis, source = round(value * 1000), TimestampFormat.epoch_s
        else:
            millis, source = round(value), TimestampFormat.epoch_ms
    elif isinstance(value, str):
        millis, source = _parse_iso(value), TimestampFormat.iso8601
    else:
        raise InvalidField(
            "timestamp", f"must be epoch milliseconds or an ISO-8601 string, got {type_name(value)}"
        )
    now = now_ms if now_ms is not None else time.time_ns() // 1_000_000
    if millis > now + MAX_FUTURE_MS:
        hint = " (it looks like micro- or nanoseconds)" if millis > now * 100 else ""
        raise InvalidField(
            "timestamp", f"{value!r} is more than a day in the future{hint}; use epoch milliseconds"
        )
    if millis < 0:
        raise InvalidField("timestamp", f"{value!r} is before 1970; use Unix epoch milliseconds")
    return millis, source


def _parse_iso(value: str) -> int:
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidField(
            "timestamp", f"{value[:64]!r} is not ISO-8601 (e.g. 2024-05-01T12:00:00Z) nor epoch ms"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)  # documented: naive times are UTC
    return math.floor(parsed.timestamp() * 1000)


def _validate(
    raw: object, *, client_id: str | None, workload_id: str | None, now_ms: int | None
) -> Accepted:
    body = require_object(raw, "")
    kind = _decide_kind(body)
    overridden = False
    ids: dict[str, str] = {}
    for name, override in (("client_id", client_id), ("workload_id", workload_id)):
        if override is not None:
            overridden = overridden or (name in body and body[name] != override)
            ids[name] = _check_id(override, name, flag=True)
        elif name not in body or body[name] is None:
            raise InvalidField(
                name, f"is missing; add it to the record or pass --{name.replace('_', '-')}"
            )
        else:
            ids[name] = _check_id(body[name], name)
    if "timestamp" not in body or body["timestamp"] is None:
        raise InvalidField(
            "timestamp", "is missing; add Unix epoch milliseconds (or seconds, ISO-8601)"
        )
    millis, ts_format = normalise_timestamp(body["timestamp"], now_ms=now_ms)
    original = body["timestamp"]
    note = None
    if ts_format is not TimestampFormat.epoch_ms and isinstance(original, str | int | float):
        note = TimestampNote(source=ts_format, original=original, millis=millis)

    record: ChatLog | RetrievalLog
    if kind is LogKind.chat:
        known = _COMMON_FIELDS | _CHAT_FIELDS
        record = _chat(body, ids, millis)
        ignored = tuple(sorted(str(k) for k in body if k not in known))
    else:
        known = _COMMON_FIELDS | _RETRIEVAL_FIELDS
        record, dropped = _retrieval(body, ids, millis)
        ignored = tuple(sorted({*(str(k) for k in body if k not in known), *dropped}))
    return Accepted(
        record=record,
        timestamp_format=ts_format,
        timestamp_note=note,
        ignored_fields=ignored,
        ids_overridden=overridden,
    )


def _decide_kind(body: Mapping[str, Any]) -> LogKind:
    if "kind" in body and body["kind"] is not None:
        value = body["kind"]
        if value not in (LogKind.chat.value, LogKind.retrieval.value):
            raise InvalidField("kind", f"{value!r} is not a log kind; use 'chat' or 'retrieval'")
        return LogKind(value)
    chat = bool(_CHAT_FIELDS & body.keys())
    retrieval = bool({"query", "retrieved"} & body.keys())
    if chat and retrieval:
        raise InvalidField("kind", "record has both chat and retrieval fields; set kind explicitly")
    if chat:
        return LogKind.chat
    if retrieval:
        return LogKind.retrieval
    raise InvalidField(
        "", "record has neither request/response (chat) nor query/retrieved (retrieval) fields"
    )


def _check_id(value: object, name: str, *, flag: bool = False) -> str:
    where = f"--{name.replace('_', '-')}" if flag else name
    text = require_string(value, name)
    if not _ID_RE.match(text):
        raise InvalidField(
            name,
            f"{where} {text[:64]!r} is not a valid id; use 1-128 letters, digits or '._:@-', "
            "starting with a letter or digit",
        )
    return text


def _chat(body: Mapping[str, Any], ids: dict[str, str], millis: int) -> ChatLog:
    for name in ("request", "response"):
        if name not in body or body[name] is None:
            raise InvalidField(name, f"is missing; a chat log needs the OpenAI {name} body")
    check_chat_request(body["request"])
    check_chat_response(body["response"])
    return ChatLog(
        client_id=ids["client_id"],
        workload_id=ids["workload_id"],
        timestamp=millis,
        request=dict(body["request"]),
        response=dict(body["response"]),
    )


def _retrieval(
    body: Mapping[str, Any], ids: dict[str, str], millis: int
) -> tuple[RetrievalLog, set[str]]:
    if "query" not in body:
        raise InvalidField("query", "is missing; add the retriever's query text")
    query = require_string(body["query"], "query")
    if "retrieved" not in body:
        raise InvalidField("retrieved", "is missing; add the passages the retriever returned")
    raw_passages = body["retrieved"]
    if not isinstance(raw_passages, list):
        raise InvalidField("retrieved", f"must be an array, got {type_name(raw_passages)}")
    dropped: set[str] = set()
    passages = [_passage(p, f"retrieved[{i}]", dropped) for i, p in enumerate(raw_passages)]
    known_ids = {p.doc_id for p in passages}
    used = _doc_ids(body, "used_doc_ids", known_ids)
    clicked = _doc_ids(body, "clicked_doc_ids", known_ids)
    feedback = body.get("feedback")
    if feedback is not None:
        feedback = dict(require_object(feedback, "feedback"))
    record = RetrievalLog(
        client_id=ids["client_id"],
        workload_id=ids["workload_id"],
        timestamp=millis,
        query=query,
        retrieved=passages,
        used_doc_ids=used,
        clicked_doc_ids=clicked,
        feedback=feedback,
    )
    return record, dropped


def _passage(raw: object, field: str, dropped: set[str]) -> RetrievedPassage:
    body = require_object(raw, field)
    # "id" is accepted for doc_id because most retrievers name it so.
    doc_id = body.get("doc_id", body.get("id"))
    if doc_id is None:
        raise InvalidField(f"{field}.doc_id", "is missing; add the passage's id")
    if isinstance(doc_id, int) and not isinstance(doc_id, bool):
        doc_id = str(doc_id)
    doc_id = require_string(doc_id, f"{field}.doc_id")
    text = require_string(body.get("text"), f"{field}.text")
    score = body.get("score")
    if score is not None and not is_number(score):
        raise InvalidField(f"{field}.score", f"must be a number, got {type_name(score)}")
    rank = body.get("rank")
    if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 0):
        raise InvalidField(f"{field}.rank", "must be a non-negative integer")
    source = body.get("source")
    if source is not None:
        require_string(source, f"{field}.source", non_empty=False)
    dropped.update(f"retrieved[].{k}" for k in body if k not in _PASSAGE_FIELDS and k != "id")
    return RetrievedPassage(doc_id=doc_id, text=text, score=score, rank=rank, source=source)


def _doc_ids(body: Mapping[str, Any], name: str, known: set[str]) -> list[str]:
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidField(name, f"must be an array of doc ids, got {type_name(value)}")
    out: list[str] = []
    for i, item in enumerate(value):
        if isinstance(item, int) and not isinstance(item, bool):
            item = str(item)
        doc_id = require_string(item, f"{name}[{i}]")
        if doc_id not in known:
            raise InvalidField(
                f"{name}[{i}]", f"{doc_id[:64]!r} is not among the retrieved doc_ids"
            )
        out.append(doc_id)
    return out
