"""The dataset step's port and its adapter over the dataset build services.

The workflow only needs "build this job's datasets into this directory and tell me which
file plays which role". Keeping that behind :class:`DatasetBuilder` lets tests substitute
a tiny builder and keeps the workflow independent of the build pipeline's internals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from flywheel.config.schema import JobConfig
from flywheel.domain.jobs import Job, JobType
from flywheel.platforms.base import DatasetFiles
from flywheel.stores.base import LogStore

ICL_PREFIX = "icl:"


@dataclass(frozen=True)
class BuiltDatasets:
    """Where a build put its files (role → absolute path) and what it counted."""

    files: dict[str, str]
    stats: dict[str, Any] = field(default_factory=dict)
    workload_type: str | None = None


class DatasetBuilder(Protocol):
    """Builds one job's datasets."""

    def build(self, job: Job, config: JobConfig, out_dir: Path) -> BuiltDatasets:
        """Write the job's datasets under ``out_dir``.

        Raises:
            DatasetError: the logs cannot make a usable dataset (a permanent job failure).
        """
        ...


class LogStoreDatasetBuilder:
    """Builds datasets from the log store with :mod:`flywheel.services.datasets` (LLM jobs)
    and :mod:`flywheel.services.retrieval_datasets` (embedding jobs)."""

    def __init__(self, log_store: LogStore) -> None:
        """Read logs from ``log_store``."""
        self._logs = log_store

    def build(self, job: Job, config: JobConfig, out_dir: Path) -> BuiltDatasets:
        """Run the right build for the job type."""
        if job.job_type is JobType.embedding_job:
            from flywheel.services.retrieval_datasets import (
                TRAINING_FILE,
                VALIDATION_FILE,
                build_retrieval_datasets,
            )

            retrieval = build_retrieval_datasets(
                log_store=self._logs,
                client_id=job.client_id,
                workload_id=job.workload_id,
                config=config,
                out_dir=out_dir,
            )
            return BuiltDatasets(
                files={
                    "root": str(out_dir),
                    "beir_dir": str(out_dir / "eval"),
                    "train": str(retrieval.files[TRAINING_FILE]),
                    "validation": str(retrieval.files[VALIDATION_FILE]),
                },
                stats=retrieval.stats.to_dict(),
                workload_type="retrieval",
            )
        from flywheel.services.datasets import (
            EVAL_FILE,
            TRAIN_FILE,
            VAL_FILE,
            build_datasets,
        )

        chat = build_datasets(
            log_store=self._logs,
            client_id=job.client_id,
            workload_id=job.workload_id,
            config=config,
            out_dir=out_dir,
        )
        files = {
            "root": str(out_dir),
            "eval": str(chat.files[EVAL_FILE].path),
            "train": str(chat.files[TRAIN_FILE].path),
            "validation": str(chat.files[VAL_FILE].path),
        }
        files.update({f"{ICL_PREFIX}{name}": str(path) for name, path in chat.icl_files.items()})
        stats: dict[str, Any] = {
            key: chat.manifest[key]
            for key in ("stages", "splits", "tool_calling_records", "workload_type", "seed")
            if key in chat.manifest
        }
        return BuiltDatasets(files=files, stats=stats, workload_type=chat.workload_type)


def dataset_files(files: dict[str, str]) -> DatasetFiles:
    """The platform port's view of the recorded files."""

    def path(role: str) -> Path | None:
        return Path(files[role]) if files.get(role) else None

    return DatasetFiles(
        root=Path(files["root"]),
        eval=path("eval"),
        icl_eval={
            role[len(ICL_PREFIX) :]: Path(p)
            for role, p in files.items()
            if role.startswith(ICL_PREFIX)
        },
        train=path("train"),
        validation=path("validation"),
        beir_dir=path("beir_dir"),
    )
