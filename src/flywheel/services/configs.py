"""Named configurations: versioned, partial job configurations validated on every write.

A body is validated by resolving it against the base configuration for its ``job_type``,
exactly as a job submission would, so a config that is accepted here can always start a
job. Updates add a version (optimistic concurrency on ``expected_version``); jobs pin the
version they resolved and keep their snapshot, so edits never change queued or running jobs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flywheel.config.resolve import resolve_job_config
from flywheel.domain.jobs import ACTIVE_STATUSES, JobType, NamedConfig
from flywheel.errors import Conflict, ValidationFailed
from flywheel.stores.base import StateStore


def _validated(base: Mapping[str, Any], *, job_type: JobType, body: Mapping[str, Any]) -> None:
    try:
        resolve_job_config(base, job_type=job_type, named=body)
    except ValidationFailed as exc:
        # Resolution reports paths under "config"; here the caller sent them under "body".
        errors = [{**e, "loc": ["body", *list(e.get("loc", []))[1:]]} for e in exc.errors]
        raise ValidationFailed(f"config body is invalid: {exc}", errors) from exc


class ConfigService:
    """Create, read, version and delete named configs."""

    def __init__(self, *, store: StateStore, base_config: Mapping[str, Any]) -> None:
        """Store configs in ``store``; validate against ``base_config`` (defaults ← file)."""
        self._store = store
        self._base = base_config

    def create(
        self,
        *,
        name: str,
        job_type: JobType,
        body: Mapping[str, Any],
        description: str = "",
        created_by: str | None = None,
    ) -> NamedConfig:
        """Validate and store version 1 of a new config."""
        _validated(self._base, job_type=job_type, body=body)
        return self._store.create_config(
            NamedConfig(
                name=name,
                version=1,
                job_type=job_type,
                body=dict(body),
                description=description,
                created_by=created_by,
            )
        )

    def get(self, name: str, version: int | None = None) -> NamedConfig:
        """The latest (or a given) version of a live config."""
        return self._store.get_config(name, version)

    def list_latest(self) -> list[NamedConfig]:
        """The latest version of each live config."""
        return self._store.list_configs()

    def versions(self, name: str) -> list[NamedConfig]:
        """Every version of a config, oldest first."""
        return self._store.list_config_versions(name)

    def update(
        self,
        name: str,
        *,
        expected_version: int,
        body: Mapping[str, Any],
        job_type: JobType | None = None,
        description: str | None = None,
        created_by: str | None = None,
    ) -> NamedConfig:
        """Validate and add version ``expected_version + 1``; Conflict if it is not the latest."""
        current = self._store.get_config(name)
        if current.version != expected_version:
            raise Conflict(
                f"config {name!r} is at version {current.version}, not {expected_version}; "
                "reload it and apply your change again"
            )
        kind = job_type or current.job_type
        _validated(self._base, job_type=kind, body=body)
        return self._store.add_config_version(
            NamedConfig(
                name=name,
                version=expected_version + 1,
                job_type=kind,
                body=dict(body),
                description=current.description if description is None else description,
                created_by=created_by,
            ),
            expect_version=expected_version,
        )

    def delete(self, name: str) -> None:
        """Soft-delete a config unless an active job uses it (pinned versions stay readable)."""
        self._store.get_config(name)
        active = self._store.count_jobs(config_name=name, statuses=ACTIVE_STATUSES)
        if active:
            raise Conflict(
                f"config {name!r} is used by {active} pending or running job(s); "
                "wait for them to finish or cancel them first"
            )
        self._store.delete_config(name)
