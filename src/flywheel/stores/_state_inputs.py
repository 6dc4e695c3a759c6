"""Input rules both state-store adapters share, so SQLite and MongoDB behave identically.

Each adapter translates storage; this module decides what the inputs *mean*: how a
``changes`` mapping is validated, how timestamps are normalised, what a page cursor holds,
and how ``client_id``/``client_ids`` combine.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from flywheel.errors import ValidationFailed

M = TypeVar("M", bound=BaseModel)


#: Job fields ``list_jobs(summary=True)`` leaves at their defaults: the configuration snapshot
#: and the workflow's outputs, the bulk of a stored job and none of a listing row.
JOB_SUMMARY_OMITS = ("config", "state", "datasets", "dataset_stats", "recommendation")


def as_stored_time(value: datetime) -> datetime:
    """UTC, truncated to milliseconds: the most that a BSON date holds.

    Both adapters store this, so a value read back equals the value returned on write,
    whatever the backend. Naive datetimes are taken as UTC (what pymongo does).
    """
    aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return aware.replace(microsecond=(aware.microsecond // 1000) * 1000)


#: The integers both backends hold: BSON has no wider type, and SQLite's INTEGER is 64-bit.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def fits_int64(value: int) -> bool:
    """Whether ``value`` can be stored (and so matched against anything stored)."""
    return INT64_MIN <= value <= INT64_MAX


def _wide_ints(value: Any, loc: tuple[str | int, ...]) -> Iterator[tuple[str | int, ...]]:
    if isinstance(value, int) and not isinstance(value, bool):
        if not fits_int64(value):
            yield loc
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _wide_ints(item, (*loc, key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _wide_ints(item, (*loc, index))


def check_storable(fields: Iterable[tuple[str, Any]], what: str) -> None:
    """Refuse integers beyond 64 bits anywhere in ``fields`` (name, value pairs).

    MongoDB cannot encode them and SQLite's JSON functions lose them, so both adapters refuse
    them up front, the same way.

    Raises:
        ValidationFailed: one error per such integer, located by its path.
    """
    errors = [
        {"loc": list(loc), "msg": "integer out of range (must fit in 64 bits)"}
        for name, value in fields
        for loc in _wide_ints(value, (name,))
    ]
    if errors:
        raise ValidationFailed(f"{what}: integer out of range (must fit in 64 bits)", errors)


def _stored_value(value: Any) -> Any:
    return as_stored_time(value) if isinstance(value, datetime) else value


def normalized(entity: M) -> M:
    """A copy of ``entity`` whose top-level datetimes are in their stored form.

    Raises:
        ValidationFailed: a value holds an integer beyond 64 bits (see :func:`check_storable`).
    """
    check_storable(entity, f"invalid {type(entity).__name__}")
    times = {
        name: as_stored_time(value)
        for name, value in entity
        if isinstance(value, datetime) and value != as_stored_time(value)
    }
    return entity.model_copy(update=times) if times else entity


@functools.cache
def _field_adapter(model: type[BaseModel], name: str) -> TypeAdapter[Any]:
    """The validator of one field, constraints included (``Annotated`` carries the FieldInfo)."""
    field = model.model_fields[name]
    # The annotation is only known at run time, which mypy cannot express as a TypeForm.
    return TypeAdapter(Annotated[field.annotation, field])  # type: ignore[arg-type]


def validated_changes(
    model: type[BaseModel], changes: Mapping[str, Any], *, protected: Iterable[str]
) -> dict[str, Any]:
    """Validate a partial update field by field, as the model would.

    Validating here (not in the database) keeps a bad write from ever reaching either
    backend, and lets MongoDB apply ``$set`` without reading the document first.

    Raises:
        ValidationFailed: an unknown or store-managed field, or an invalid value.
    """
    fixed = set(protected)
    errors: list[dict[str, Any]] = []
    clean: dict[str, Any] = {}
    for name, value in changes.items():
        if name not in model.model_fields or name in fixed:
            errors.append({"loc": [name], "msg": "field cannot be changed"})
            continue
        try:
            clean[name] = _stored_value(_field_adapter(model, name).validate_python(value))
        except ValidationError as exc:
            errors.extend({"loc": [name], "msg": err["msg"]} for err in exc.errors())
    if errors:
        raise ValidationFailed(f"invalid {model.__name__} changes", errors)
    check_storable(clean.items(), f"invalid {model.__name__} changes")
    return clean


def encode_cursor(created_at: datetime, item_id: str) -> str:
    """Opaque keyset cursor: the sort key of the last item on a page."""
    raw = json.dumps([as_stored_time(created_at).isoformat(), item_id]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Undo :func:`encode_cursor`.

    Raises:
        ValidationFailed: the cursor was not made by :func:`encode_cursor`.
    """
    try:
        created, item_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        when = datetime.fromisoformat(created)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise _bad_cursor() from exc
    if not isinstance(item_id, str) or when.tzinfo is None:
        raise _bad_cursor()
    return when, item_id


def _bad_cursor() -> ValidationFailed:
    return ValidationFailed("malformed page cursor", [{"loc": ["cursor"], "msg": "malformed"}])


def client_scope(client_id: str | None, client_ids: Iterable[str] | None) -> list[str] | None:
    """The client ids a listing may return: ``client_id`` within the tenant scope.

    None means unrestricted; an empty list means nothing is visible.
    """
    if client_ids is None:
        return None if client_id is None else [client_id]
    scope = set(client_ids)
    if client_id is not None:
        scope &= {client_id}
    return sorted(scope)


def check_limit(limit: int) -> None:
    """Raises ValidationFailed unless ``limit`` is a positive page size."""
    if limit < 1:
        raise ValidationFailed(
            "page size must be positive", [{"loc": ["limit"], "msg": "must be >= 1"}]
        )
    if not fits_int64(limit + 1):
        raise ValidationFailed(
            "page size out of range", [{"loc": ["limit"], "msg": "must fit in 64 bits"}]
        )
