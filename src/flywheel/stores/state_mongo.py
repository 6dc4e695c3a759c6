"""MongoDB adapter of the state store (pymongo).

One collection per entity (``jobs``, ``candidate_runs``, ``configs``, ``api_keys``,
``promotions``; ``promotion_heads`` says which promotion is in force), each with an index
for every query it serves; entities with an id keep it in ``_id``. Compare-and-set is a
single ``find_one_and_update`` whose filter carries the preconditions; when it matches
nothing, a second lookup tells a missing document (``NotFound``) from a lost race
(``Conflict``). Datetimes are BSON dates, read back as timezone-aware UTC.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC
from typing import Any, Literal, NoReturn, ParamSpec, TypeVar
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel
from pymongo import ASCENDING, DESCENDING, MongoClient, ReturnDocument
from pymongo.collection import Collection
from pymongo.errors import ConnectionFailure, DuplicateKeyError

from flywheel.domain.jobs import (
    ApiKey,
    CandidateRun,
    Job,
    JobId,
    JobStatus,
    JobType,
    KeyId,
    NamedConfig,
    Page,
    Promotion,
    WebhookOutcome,
    utcnow,
)
from flywheel.errors import Conflict, NotFound, StoreUnavailable
from flywheel.stores._state_inputs import (
    JOB_SUMMARY_OMITS,
    check_limit,
    client_scope,
    decode_cursor,
    encode_cursor,
    fits_int64,
    normalized,
    validated_changes,
)
from flywheel.stores.base import promotion_moved, sorted_after

P = ParamSpec("P")
R = TypeVar("R")
Doc = dict[str, Any]

# Bounded waits so an unreachable MongoDB fails fast; options in the URL take precedence.
_DEFAULT_OPTIONS: dict[str, Any] = {
    "serverSelectionTimeoutMS": 5_000,
    "connectTimeoutMS": 5_000,
    "socketTimeoutMS": 5_000,
    "retryWrites": True,
}
_JOB_MANAGED = ("id", "version", "created_at", "updated_at")
_RUN_MANAGED = ("job_id", "name", "version", "created_at", "updated_at")
_NEWEST = [("created_at", DESCENDING), ("_id", DESCENDING)]
_JOB_SUMMARY_PROJECTION = dict.fromkeys(JOB_SUMMARY_OMITS, 0)
_INDEXES: dict[str, list[tuple[list[tuple[str, int]], bool]]] = {
    "jobs": [
        (_NEWEST, False),
        ([("status", ASCENDING), *_NEWEST], False),
        ([("client_id", ASCENDING), *_NEWEST], False),
        ([("client_id", ASCENDING), ("workload_id", ASCENDING), *_NEWEST], False),
        ([("workload_id", ASCENDING), *_NEWEST], False),
        ([("job_type", ASCENDING), *_NEWEST], False),
        ([("config_name", ASCENDING), ("status", ASCENDING)], False),
    ],
    "candidate_runs": [
        ([("job_id", ASCENDING), ("name", ASCENDING)], True),
        ([("job_id", ASCENDING), ("_id", ASCENDING)], False),
    ],
    "configs": [
        ([("name", ASCENDING), ("version", ASCENDING)], True),
        ([("deleted", ASCENDING), ("name", ASCENDING), ("version", DESCENDING)], False),
    ],
    "api_keys": [([("key_hash", ASCENDING)], True), (_NEWEST, False)],
    "promotions": [
        (
            [
                ("client_id", ASCENDING),
                ("workload_id", ASCENDING),
                ("promoted_at", DESCENDING),
                ("_id", DESCENDING),
            ],
            False,
        )
    ],
}


def _translated(method: Callable[P, R]) -> Callable[P, R]:
    """Re-raise "cannot reach MongoDB" as ``StoreUnavailable`` (transient, retryable)."""

    @functools.wraps(method)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except ConnectionFailure as exc:  # includes AutoReconnect and server-selection timeouts
            # pymongo's text lists the cluster topology (internal hosts and ports): keep it
            # in the chained exception for server logs, out of the message clients see.
            raise StoreUnavailable(
                f"MongoDB state store is unreachable ({type(exc).__name__}); check MONGODB_URL "
                "and that the server is up"
            ) from exc

    return call


def _with_id(entity: BaseModel) -> Doc:
    doc = normalized(entity).model_dump()
    doc["_id"] = doc.pop("id")
    return doc


def _without_id(doc: Mapping[str, Any]) -> Doc:
    return {key: value for key, value in doc.items() if key != "_id"}


def _job_from_doc(doc: Mapping[str, Any]) -> Job:
    return Job.model_validate({**_without_id(doc), "id": doc["_id"]})


def _run_from_doc(doc: Mapping[str, Any]) -> CandidateRun:
    return CandidateRun.model_validate(_without_id(doc))


def _config_from_doc(doc: Mapping[str, Any]) -> NamedConfig:
    return NamedConfig.model_validate(_without_id(doc))


def _key_from_doc(doc: Mapping[str, Any]) -> ApiKey:
    return ApiKey.model_validate({**_without_id(doc), "id": doc["_id"]})


def _promotion_from_doc(doc: Mapping[str, Any]) -> Promotion:
    return Promotion.model_validate({**_without_id(doc), "id": doc["_id"]})


def _cas_update(changes: Mapping[str, Any]) -> Doc:
    return {"$set": {**changes, "updated_at": utcnow()}, "$inc": {"version": 1}}


class MongoStateStore:
    """The :class:`~flywheel.stores.base.StateStore` port on one MongoDB database."""

    def __init__(self, client: MongoClient[Doc], db_name: str) -> None:
        """Use ``db_name`` on ``client`` (the store owns the client and closes it)."""
        self._client = client
        db = client[db_name]
        self._jobs: Collection[Doc] = db["jobs"]
        self._runs: Collection[Doc] = db["candidate_runs"]
        self._configs: Collection[Doc] = db["configs"]
        self._keys: Collection[Doc] = db["api_keys"]
        self._promotions: Collection[Doc] = db["promotions"]
        self._heads: Collection[Doc] = db["promotion_heads"]

    @classmethod
    def from_url(cls, url: str) -> MongoStateStore:
        """Connect to ``mongodb://...[/db]`` (database ``flywheel`` unless the path names one).

        Timeouts default to 5 s each; the URL's own options override them.

        Raises:
            StoreUnavailable: MongoDB cannot be reached to create the indexes.
        """
        given = {name.lower() for name in parse_qs(urlsplit(url).query)}
        defaults = {k: v for k, v in _DEFAULT_OPTIONS.items() if k.lower() not in given}
        client: MongoClient[Doc] = MongoClient(url, tz_aware=True, tzinfo=UTC, **defaults)
        store = cls(client, client.get_default_database(default="flywheel").name)
        try:
            store.ensure_indexes()
        except BaseException:
            client.close()
            raise
        return store

    @_translated
    def ensure_indexes(self) -> None:
        """Create every index the queries rely on (idempotent)."""
        db = self._jobs.database
        for collection, indexes in _INDEXES.items():
            for keys, unique in indexes:
                db[collection].create_index(keys, unique=unique)

    def _raise_missed(self, collection: Collection[Doc], key: Doc, what: str) -> NoReturn:
        """Explain why a compare-and-set matched nothing."""
        current = collection.find_one(key, {"status": 1, "version": 1})
        if current is None:
            raise NotFound(f"{what} not found")
        state = ", ".join(f"{k}={current[k]}" for k in ("status", "version") if k in current)
        raise Conflict(f"{what} changed first ({state})")

    # -- jobs ---------------------------------------------------------------------------
    @_translated
    def create_job(self, job: Job) -> Job:
        """See :meth:`StateStore.create_job`."""
        doc = _with_id(job)
        try:
            self._jobs.insert_one(doc)
        except DuplicateKeyError as exc:
            raise Conflict(f"job {job.id} already exists") from exc
        return _job_from_doc(doc)

    @_translated
    def get_job(self, job_id: JobId) -> Job:
        """See :meth:`StateStore.get_job`."""
        doc = self._jobs.find_one({"_id": job_id})
        if doc is None:
            raise NotFound(f"job {job_id} not found")
        return _job_from_doc(doc)

    @_translated
    def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        client_id: str | None = None,
        client_ids: Iterable[str] | None = None,
        workload_id: str | None = None,
        job_type: JobType | None = None,
        limit: int = 50,
        cursor: str | None = None,
        summary: bool = False,
    ) -> Page[Job]:
        """See :meth:`StateStore.list_jobs` (keyset pagination on the ``created_at`` indexes).

        ``summary`` projects the heavy fields away on the server.
        """
        check_limit(limit)
        scope = client_scope(client_id, client_ids)
        if scope == []:
            return Page[Job](items=[])
        query: Doc = {
            field: value
            for field, value in (
                ("status", status),
                ("workload_id", workload_id),
                ("job_type", job_type),
            )
            if value is not None
        }
        if scope is not None:
            query["client_id"] = {"$in": scope}
        if cursor is not None:
            after, after_id = decode_cursor(cursor)
            query["$or"] = [
                {"created_at": {"$lt": after}},
                {"created_at": after, "_id": {"$lt": after_id}},
            ]
        projection = _JOB_SUMMARY_PROJECTION if summary else None
        docs = list(self._jobs.find(query, projection, sort=_NEWEST, limit=limit + 1))
        items = [_job_from_doc(doc) for doc in docs[:limit]]
        more = len(docs) > limit
        return Page[Job](
            items=items,
            next_cursor=encode_cursor(items[-1].created_at, items[-1].id) if more else None,
        )

    @_translated
    def update_job(
        self,
        job_id: JobId,
        changes: Mapping[str, Any],
        *,
        expect_status: Iterable[JobStatus] | None = None,
        expect_version: int | None = None,
    ) -> Job:
        """See :meth:`StateStore.update_job`."""
        clean = validated_changes(Job, changes, protected=_JOB_MANAGED)
        query: Doc = {"_id": job_id}
        if expect_version is not None and not fits_int64(expect_version):  # BSON cannot hold it
            self._raise_missed(self._jobs, query, f"job {job_id}")
        if expect_status is not None:
            query["status"] = {"$in": sorted(set(expect_status))}
        if expect_version is not None:
            query["version"] = expect_version
        doc = self._jobs.find_one_and_update(
            query, _cas_update(clean), return_document=ReturnDocument.AFTER
        )
        if doc is None:
            self._raise_missed(self._jobs, {"_id": job_id}, f"job {job_id}")
        return _job_from_doc(doc)

    @_translated
    def delete_job(self, job_id: JobId) -> None:
        """See :meth:`StateStore.delete_job` (runs first, so a retry after a crash finishes)."""
        self._runs.delete_many({"job_id": job_id})
        if self._jobs.delete_one({"_id": job_id}).deleted_count == 0:
            raise NotFound(f"job {job_id} not found")

    @_translated
    def count_jobs(
        self, *, config_name: str | None = None, statuses: Iterable[JobStatus] | None = None
    ) -> int:
        """See :meth:`StateStore.count_jobs`."""
        query: Doc = {}
        if config_name is not None:
            query["config_name"] = config_name
        if statuses is not None:
            query["status"] = {"$in": sorted(set(statuses))}
        return self._jobs.count_documents(query)

    # -- candidate runs -----------------------------------------------------------------
    @_translated
    def put_candidate_run(self, run: CandidateRun) -> CandidateRun:
        """See :meth:`StateStore.put_candidate_run`.

        An upsert lets the server assign ``_id``, whose order is insertion order.
        """
        key = {"job_id": run.job_id, "name": run.name}
        try:
            doc = self._runs.find_one_and_update(
                key,
                {"$setOnInsert": normalized(run).model_dump()},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:  # a concurrent put inserted it between our match and insert
            doc = self._runs.find_one(key)
        assert doc is not None  # upserted, or inserted by the racer
        return _run_from_doc(doc)

    @_translated
    def list_candidate_runs(self, job_id: JobId) -> list[CandidateRun]:
        """See :meth:`StateStore.list_candidate_runs`."""
        return [
            _run_from_doc(doc) for doc in self._runs.find({"job_id": job_id}, sort=[("_id", 1)])
        ]

    @_translated
    def update_candidate_run(
        self,
        job_id: JobId,
        name: str,
        changes: Mapping[str, Any],
        *,
        expect_version: int | None = None,
    ) -> CandidateRun:
        """See :meth:`StateStore.update_candidate_run`."""
        clean = validated_changes(CandidateRun, changes, protected=_RUN_MANAGED)
        key: Doc = {"job_id": job_id, "name": name}
        what = f"candidate run {name!r} of job {job_id}"
        if expect_version is not None and not fits_int64(expect_version):  # BSON cannot hold it
            self._raise_missed(self._runs, key, what)
        query = key if expect_version is None else {**key, "version": expect_version}
        doc = self._runs.find_one_and_update(
            query, _cas_update(clean), return_document=ReturnDocument.AFTER
        )
        if doc is None:
            self._raise_missed(self._runs, key, what)
        return _run_from_doc(doc)

    # -- named configs ------------------------------------------------------------------
    def _insert_config(self, config: NamedConfig, version: int) -> NamedConfig:
        """Insert one version; the unique (name, version) index turns a lost race into Conflict."""
        stored = normalized(config).model_copy(update={"version": version, "deleted": False})
        try:
            self._configs.insert_one(stored.model_dump())
        except DuplicateKeyError as exc:
            raise Conflict(f"config {config.name!r} v{version} was written concurrently") from exc
        return stored

    @_translated
    def create_config(self, config: NamedConfig) -> NamedConfig:
        """See :meth:`StateStore.create_config`.

        The stored version is 1 for a new name; a name deleted before continues after its
        old versions, so a (name, version) pair pinned by a job always means one body.
        """
        if self._configs.find_one({"name": config.name, "deleted": False}, {"_id": 1}):
            raise Conflict(f"config {config.name!r} already exists")
        latest = self._configs.find_one({"name": config.name}, sort=[("version", DESCENDING)])
        return self._insert_config(config, 1 if latest is None else latest["version"] + 1)

    @_translated
    def add_config_version(self, config: NamedConfig, *, expect_version: int) -> NamedConfig:
        """See :meth:`StateStore.add_config_version`."""
        latest = self._configs.find_one({"name": config.name}, sort=[("version", DESCENDING)])
        if latest is None or latest["deleted"]:
            raise NotFound(f"config {config.name!r} not found")
        if latest["version"] != expect_version:
            raise Conflict(
                f"config {config.name!r} is at version {latest['version']}, not {expect_version}"
            )
        return self._insert_config(config, expect_version + 1)

    @_translated
    def get_config(self, name: str, version: int | None = None) -> NamedConfig:
        """See :meth:`StateStore.get_config` (a pinned version stays readable once deleted)."""
        if version is not None and not fits_int64(version):  # no stored version can match
            raise NotFound(f"config {name!r} v{version} not found")
        if version is None:
            doc = self._configs.find_one(
                {"name": name, "deleted": False}, sort=[("version", DESCENDING)]
            )
        else:
            doc = self._configs.find_one({"name": name, "version": version})
        if doc is None:
            raise NotFound(f"config {name!r}{'' if version is None else f' v{version}'} not found")
        return _config_from_doc(doc)

    @_translated
    def list_configs(self) -> list[NamedConfig]:
        """See :meth:`StateStore.list_configs`."""
        # Live configs are few: take the first (highest) version of each name client-side
        # rather than depend on an aggregation pipeline.
        latest: dict[str, NamedConfig] = {}
        live = self._configs.find(
            {"deleted": False}, sort=[("name", ASCENDING), ("version", DESCENDING)]
        )
        for doc in live:
            latest.setdefault(doc["name"], _config_from_doc(doc))
        return list(latest.values())

    @_translated
    def list_config_versions(self, name: str) -> list[NamedConfig]:
        """See :meth:`StateStore.list_config_versions` (deleted versions included)."""
        docs = list(self._configs.find({"name": name}, sort=[("version", ASCENDING)]))
        if not docs:
            raise NotFound(f"config {name!r} not found")
        return [_config_from_doc(doc) for doc in docs]

    @_translated
    def delete_config(self, name: str) -> None:
        """See :meth:`StateStore.delete_config`."""
        result = self._configs.update_many(
            {"name": name, "deleted": False}, {"$set": {"deleted": True}}
        )
        if result.matched_count == 0:
            raise NotFound(f"config {name!r} not found")

    # -- API keys -----------------------------------------------------------------------
    @_translated
    def create_key(self, key: ApiKey) -> ApiKey:
        """See :meth:`StateStore.create_key`.

        Raises:
            Conflict: the id or the hash is already stored.
        """
        doc = _with_id(key)
        try:
            self._keys.insert_one(doc)
        except DuplicateKeyError as exc:
            raise Conflict(f"API key {key.id} (or its hash) already exists") from exc
        return _key_from_doc(doc)

    @_translated
    def find_key(self, key_hash: str) -> ApiKey | None:
        """See :meth:`StateStore.find_key`."""
        doc = self._keys.find_one({"key_hash": key_hash, "revoked": False})
        return None if doc is None else _key_from_doc(doc)

    @_translated
    def list_keys(self) -> list[ApiKey]:
        """See :meth:`StateStore.list_keys`."""
        return [_key_from_doc(doc) for doc in self._keys.find({}, sort=_NEWEST)]

    @_translated
    def revoke_key(self, key_id: KeyId) -> None:
        """See :meth:`StateStore.revoke_key`."""
        if self._keys.update_one({"_id": key_id}, {"$set": {"revoked": True}}).matched_count == 0:
            raise NotFound(f"API key {key_id} not found")

    # -- promotions ---------------------------------------------------------------------
    # Which promotion is in force is decided by one small document per workload in
    # ``promotion_heads``: ``{_id: "<client>/<workload>", current, pending}``. Every change
    # is a single find_one_and_update on it whose filter carries the expected ``current``
    # (and no unfinished change), so exactly one of two racing callers wins, without
    # multi-document transactions (a standalone MongoDB has none). The winner writes the
    # change it claimed into ``pending`` first and applies it to ``promotions`` afterwards;
    # whoever touches the workload next finishes a change left pending by a crash.
    @staticmethod
    def _head_id(client_id: str, workload_id: str) -> str:
        return f"{client_id}/{workload_id}"  # "/" is not allowed in ids: unambiguous

    def _apply(self, pending: Mapping[str, Any]) -> None:
        """Apply a claimed change to ``promotions`` (idempotent: it may run twice)."""
        if pending["op"] == "add":
            # A duplicate means it was applied already (by the claimant or an earlier settle).
            with contextlib.suppress(DuplicateKeyError):
                self._promotions.insert_one(dict(pending["doc"]))
        else:
            self._promotions.update_one({"_id": pending["id"]}, {"$set": {"rolled_back": True}})

    def _settle(self, client_id: str, workload_id: str) -> Doc:
        """The workload's head with no change pending (created from the history if absent)."""
        head_id = self._head_id(client_id, workload_id)
        head = self._heads.find_one({"_id": head_id})
        if head is None:
            # First change (or data from before heads existed): the history says what is live.
            live = self._promotions.find_one(
                {"client_id": client_id, "workload_id": workload_id, "rolled_back": False},
                sort=[("promoted_at", DESCENDING), ("_id", DESCENDING)],
            )
            head = {"_id": head_id, "current": live["_id"] if live else None, "pending": None}
            try:
                self._heads.insert_one(head)
            except DuplicateKeyError:
                return self._settle(client_id, workload_id)
            return head
        pending = head.get("pending")
        if pending:
            self._apply(pending)
            self._heads.update_one(
                {"_id": head_id, "pending": pending}, {"$set": {"pending": None}}
            )
            head["pending"] = None
        return head

    def _in_force(self, head: Mapping[str, Any]) -> Promotion | None:
        doc = None if head["current"] is None else self._promotions.find_one(head["current"])
        return None if doc is None else _promotion_from_doc(doc)

    def _claim(self, client_id: str, workload_id: str, expected: str | None, update: Doc) -> None:
        """Compare-and-set the head; on a lost race raise the Conflict naming the winner."""
        claimed = self._heads.find_one_and_update(
            {"_id": self._head_id(client_id, workload_id), "current": expected, "pending": None},
            {"$set": update},
        )
        if claimed is None:
            current = self._in_force(self._settle(client_id, workload_id))
            raise promotion_moved(client_id, workload_id, current, expected)

    def _finish(self, client_id: str, workload_id: str, pending: Doc) -> None:
        self._apply(pending)
        self._heads.update_one(
            {"_id": self._head_id(client_id, workload_id), "pending": pending},
            {"$set": {"pending": None}},
        )

    @_translated
    def add_promotion(self, promotion: Promotion, *, expected_current: str | None) -> Promotion:
        """See :meth:`StateStore.add_promotion`.

        Raises:
            Conflict: the promotion in force is not ``expected_current``, or the id exists.
        """
        client_id, workload_id = promotion.client_id, promotion.workload_id
        head = self._settle(client_id, workload_id)
        if self._promotions.find_one({"_id": promotion.id}, {"_id": 1}) is not None:
            raise Conflict(f"promotion {promotion.id} already exists")
        if head["current"] != expected_current:
            raise promotion_moved(client_id, workload_id, self._in_force(head), expected_current)
        doc = _with_id(sorted_after(promotion, self._in_force(head)))
        pending: Doc = {"op": "add", "doc": doc}
        self._claim(
            client_id, workload_id, expected_current, {"current": promotion.id, "pending": pending}
        )
        self._finish(client_id, workload_id, pending)
        return _promotion_from_doc(doc)

    @_translated
    def list_promotions(self, client_id: str, workload_id: str) -> list[Promotion]:
        """See :meth:`StateStore.list_promotions`."""
        self._settle(client_id, workload_id)
        docs = self._promotions.find(
            {"client_id": client_id, "workload_id": workload_id},
            sort=[("promoted_at", DESCENDING), ("_id", DESCENDING)],
        )
        return [_promotion_from_doc(doc) for doc in docs]

    @_translated
    def roll_back_promotion(
        self, client_id: str, workload_id: str, *, expected_current: str
    ) -> tuple[Promotion, Promotion | None]:
        """See :meth:`StateStore.roll_back_promotion`."""
        head = self._settle(client_id, workload_id)
        current = self._in_force(head)
        if current is None or current.id != expected_current:
            raise promotion_moved(client_id, workload_id, current, expected_current)
        previous = self._promotions.find_one(
            {
                "client_id": client_id,
                "workload_id": workload_id,
                "rolled_back": False,
                "_id": {"$ne": current.id},
            },
            sort=[("promoted_at", DESCENDING), ("_id", DESCENDING)],
        )
        pending: Doc = {"op": "rollback", "id": current.id}
        self._claim(
            client_id,
            workload_id,
            expected_current,
            {"current": previous["_id"] if previous else None, "pending": pending},
        )
        self._finish(client_id, workload_id, pending)
        now = None if previous is None else _promotion_from_doc(previous)
        return current.model_copy(update={"rolled_back": True}), now

    @_translated
    def record_promotion_webhook(
        self,
        promotion_id: str,
        outcome: WebhookOutcome,
        *,
        event: Literal["promotion", "rollback"],
    ) -> Promotion:
        """See :meth:`StateStore.record_promotion_webhook`."""
        field = "webhook" if event == "promotion" else "rollback_webhook"
        doc = self._promotions.find_one_and_update(
            {"_id": promotion_id},
            {"$set": {field: normalized(outcome).model_dump()}},
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            raise NotFound(f"promotion {promotion_id} not found")
        return _promotion_from_doc(doc)

    # -- lifecycle ----------------------------------------------------------------------
    @_translated
    def ping(self) -> None:
        """See :meth:`StateStore.ping`."""
        self._client.admin.command("ping")

    def close(self) -> None:
        """Close the client's connection pool."""
        self._client.close()
