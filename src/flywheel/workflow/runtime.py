"""Per-process composition of the workflow's ports (the worker's composition root).

Built lazily on first use inside each worker process (after the prefork fork), from the
settings and the ``FLYWHEEL_WORKFLOW_*`` options, and cached for the life of the process.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable
from typing import Any, cast

from flywheel.errors import ConfigError
from flywheel.platforms.base import ModelPlatform
from flywheel.settings import Settings, get_settings
from flywheel.stores.registry import open_log_store, open_state_store
from flywheel.workflow.capacity import CapacityLedger, RedisCapacity, SqliteCapacity
from flywheel.workflow.datasets import LogStoreDatasetBuilder
from flywheel.workflow.options import WorkflowOptions
from flywheel.workflow.steps import StepRunner, WorkflowServices

PLATFORM_ENV = "FLYWHEEL_PLATFORM"
"""``module:callable`` building the model platform from the settings. Overrides the
choice by ``NMP_BASE_URL``; used to plug in other platforms (and the tests' fake)."""


def open_platform(settings: Settings) -> ModelPlatform:
    """The model platform the settings select.

    Raises:
        ConfigError: the platform named by ``FLYWHEEL_PLATFORM`` or ``NMP_BASE_URL`` is not
            available.
    """
    spec = os.environ.get(PLATFORM_ENV)
    if spec:
        module_name, _, attr = spec.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr or "create_platform")
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"{PLATFORM_ENV}={spec!r} cannot be loaded: {exc}") from exc
        return cast(ModelPlatform, cast(Callable[[Settings], Any], factory)(settings))
    if settings.platform_kind == "nemo":
        try:
            nemo = importlib.import_module("flywheel.platforms.nemo")
            return cast(ModelPlatform, nemo.create_platform(settings))
        except (ImportError, AttributeError) as exc:
            raise ConfigError(
                f"NMP_BASE_URL is set but the nemo platform is not available: {exc}"
            ) from exc
    from flywheel.platforms.local import LocalPlatform

    return cast(
        ModelPlatform,
        LocalPlatform(
            settings.data_dir,
            torch_threads=settings.torch_threads,
            training_threads=settings.training_threads,
            max_concurrent_trainings=settings.max_concurrent_trainings,
        ),
    )


def open_capacity(settings: Settings, options: WorkflowOptions) -> CapacityLedger:
    """The GPU lease table: in Redis when configured, else a SQLite file in the data dir."""
    if settings.redis_url is not None:
        return RedisCapacity.from_url(
            settings.redis_url.get_secret_value(), prefix=options.queue_prefix
        )
    return SqliteCapacity(settings.data_dir / "workflow.db")


def build_services(settings: Settings, options: WorkflowOptions) -> WorkflowServices:
    """Open every port the workflow needs."""
    logs = open_log_store(
        settings.log_store_url,
        index=settings.es_collection_name,
        verify_certs=settings.es_verify_certs,
    )
    return WorkflowServices(
        state=open_state_store(settings.state_store_url),
        logs=logs,
        platform=open_platform(settings),
        capacity=open_capacity(settings, options),
        datasets=LogStoreDatasetBuilder(logs, torch_threads=settings.torch_threads),
        options=options,
        gpu_budget=settings.gpu_budget,
        data_dir=settings.data_dir.resolve(),
        log_store_outage=settings.log_store_outage,
        log_store_wait_max_s=settings.log_store_wait_max_s,
    )


@functools.cache
def options() -> WorkflowOptions:
    """This process's workflow options, read once (available even when the ports are not:
    a task retrying through a state-store outage needs its backoff)."""
    return WorkflowOptions()


@functools.cache
def services() -> WorkflowServices:
    """This process's ports, built once."""
    return build_services(get_settings(), options())


@functools.cache
def runner() -> StepRunner:
    """This process's step runner."""
    return StepRunner(services())
