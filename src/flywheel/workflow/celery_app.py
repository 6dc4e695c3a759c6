"""The Celery application: broker selection, queues and reliability settings.

Two modes, the same task code:

* ``REDIS_URL`` set: Celery on Redis (``rediss://``: TLS, certificates verified unless the
  URL says ``ssl_cert_reqs=none``; ``REDIS_CA_CERTS`` names a private CA).
  Messages are acknowledged *after* the step ran
  (``acks_late``) and requeued if the worker process dies (``task_reject_on_worker_lost``);
  an unacknowledged message comes back after ``visibility_timeout``. Redis also holds the
  GPU lease table.
* ``REDIS_URL`` unset (embedded): kombu's **filesystem** transport (with atomic writes,
  :mod:`.fs_transport`), a real broker that needs no server: every message is a file
  under ``$FLYWHEEL_DATA_DIR/broker/``, shared by the API process and any number of worker
  processes on the machine (each message is written atomically, then moved away by the
  one consumer that takes it). It cannot redeliver a message whose worker died mid-step;
  the sweeper covers that (it re-enqueues any active job whose last step is older than
  ``stale_after_s``). There is no eager mode: even embedded, steps run in a worker,
  never inline in the API.

Queues (names prefixed by ``FLYWHEEL_WORKFLOW_QUEUE_PREFIX``):

* ``flywheel.steps``: short steps — starting and polling platform work, shutdowns,
  cancellation; many per job, each a few platform calls.
* ``flywheel.long``: long steps — building datasets and finalizing (scoring, bootstrap CIs).
  Run them on separate workers in production so a big build never delays polls.
"""

from __future__ import annotations

import contextlib
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import structlog
from celery import Celery
from celery.signals import setup_logging, task_postrun, task_prerun, worker_init
from celery.worker.consumer import Consumer

from flywheel.errors import ConfigError
from flywheel.logging import configure_logging
from flywheel.settings import Settings, get_settings
from flywheel.workflow import fs_transport
from flywheel.workflow.options import WorkflowOptions

ADVANCE_TASK = "flywheel.advance"
SWEEP_TASK = "flywheel.sweep"
DELETE_ARTIFACTS_TASK = "flywheel.delete_artifacts"
NOTIFY_TASK = "flywheel.notify"


class ResilientConsumer(Consumer):  # type: ignore[misc]
    """Celery's consumer, surviving the loss of its broker connection.

    Celery 5.7 ``collect()`` s the broken connection (which detaches its transport) and then
    ``close()`` s it; on Redis the second close tries to restore unacknowledged messages
    through the detached transport and raises ``AttributeError``, which is not among the
    errors it ignores, so the whole worker exits with "Unrecoverable error" on every Redis
    restart. Here that close is made quiet: the worker reconnects, and messages it held
    come back after the visibility timeout (or are redone by the recovery sweep).
    """

    def on_connection_error_after_connected(self, exc: Exception) -> None:
        """Reconnect after a connection loss (see the class docstring)."""
        connection = self.connection
        if connection is not None:
            close = connection.close

            def close_quietly() -> None:
                # AttributeError: the transport was already detached by collect().
                with contextlib.suppress(AttributeError):
                    close()

            connection.close = close_quietly
        super().on_connection_error_after_connected(exc)


def broker_dir(settings: Settings) -> Path:
    """Where the embedded (filesystem) broker keeps its messages."""
    return (settings.data_dir / "broker").resolve()


def celery_config(settings: Settings, options: WorkflowOptions) -> dict[str, Any]:
    """Celery settings for these settings and options."""
    config: dict[str, Any] = {
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        "result_backend": None,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # Long-lived pool processes are recycled (see WorkflowOptions): 0 means never.
        "worker_max_tasks_per_child": options.max_tasks_per_child or None,
        "worker_max_memory_per_child": options.max_memory_per_child_mb * 1024 or None,
        "task_default_queue": options.steps_queue,
        "task_create_missing_queues": True,
        "task_routes": {
            SWEEP_TASK: {"queue": options.steps_queue},
            NOTIFY_TASK: {"queue": options.steps_queue},
        },
        "broker_connection_retry_on_startup": True,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_hijack_root_logger": False,
        "worker_consumer": f"{__name__}:ResilientConsumer",
        "timezone": "UTC",
        "beat_schedule": {
            "flywheel-sweep": {"task": SWEEP_TASK, "schedule": options.sweep_interval_s},
        },
        "beat_schedule_filename": str((settings.data_dir / "celerybeat-schedule").resolve()),
    }
    if settings.redis_url is not None:
        config["broker_url"] = settings.redis_url.get_secret_value()
        transport: dict[str, Any] = {"visibility_timeout": options.visibility_timeout_s}
        if options.queue_prefix:
            transport["global_keyprefix"] = options.queue_prefix
        config["broker_transport_options"] = transport
        if (use_ssl := broker_ssl(config["broker_url"])) is not None:
            config["broker_use_ssl"] = use_ssl
    else:
        root = broker_dir(settings)  # created by ensure_broker_dirs, not at import
        fs_transport.register()
        config["broker_url"] = f"{fs_transport.ALIAS}://"
        config["broker_transport_options"] = {
            "data_folder_in": str(root / "messages"),
            "data_folder_out": str(root / "messages"),
            "processed_folder": str(root / "processed"),
            "control_folder": str(root / "control"),
            "store_processed": False,
            "polling_interval": options.embedded_broker_poll_s,
        }
        # No broadcast channel to rely on across processes: the worker needs none.
        config["worker_enable_remote_control"] = False
        # This transport cannot redeliver, so late acks buy nothing here, while a deeper
        # prefetch saves a polling round per step (the sweeper covers a dead worker).
        config["worker_prefetch_multiplier"] = 4
    return config


def broker_ssl(url: str) -> dict[str, Any] | None:
    """kombu's ``broker_use_ssl`` for a ``rediss://`` URL (None for plain ``redis://``).

    Set explicitly because kombu turns a bare ``rediss://`` into ``CERT_NONE``. The URL was
    completed by the settings (``ssl_cert_reqs=required`` unless it says otherwise, and
    ``ssl_ca_certs`` from ``REDIS_CA_CERTS``); this copies those options over.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() != "rediss":
        return None
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    reqs = query.get("ssl_cert_reqs", "required").lower()
    modes = {
        "required": ssl.CERT_REQUIRED,
        "cert_required": ssl.CERT_REQUIRED,
        "optional": ssl.CERT_OPTIONAL,
        "cert_optional": ssl.CERT_OPTIONAL,
        "none": ssl.CERT_NONE,
        "cert_none": ssl.CERT_NONE,
    }
    if reqs not in modes:
        raise ConfigError(
            f"REDIS_URL has ssl_cert_reqs={reqs!r}; use required (the default), optional or none"
        )
    options: dict[str, Any] = {"ssl_cert_reqs": modes[reqs]}
    for key in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
        if query.get(key):
            options[key] = query[key]
    return options


def ensure_broker_dirs(conf: Any) -> None:
    """Create the embedded broker's folders (no-op on Redis); producers and workers call it."""
    if not str(conf.broker_url or "").startswith(f"{fs_transport.ALIAS}://"):
        return
    options = conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        if options.get(key):
            Path(options[key]).mkdir(parents=True, exist_ok=True)


@setup_logging.connect  # type: ignore[untyped-decorator]
def _keep_our_logging(**_: Any) -> None:
    # A receiver here stops Celery from installing its own (plain-text) handlers: the
    # worker's lines, Celery's included, stay JSON with the bound context.
    settings = get_settings()
    configure_logging(fmt=settings.log_format, level=settings.log_level)


@task_prerun.connect  # type: ignore[untyped-decorator]
def _bind_task_context(
    task_id: str | None = None, task: Any = None, args: Any = None, **_: Any
) -> None:
    # Bound before the task runs and kept until after Celery's own "succeeded" line, so
    # every line of a task, Celery's included, carries its job id. Every task of ours
    # except the sweep takes the job id as its first argument.
    structlog.contextvars.clear_contextvars()
    context: dict[str, Any] = {"task_id": task_id, "task": getattr(task, "name", None)}
    if args and isinstance(args[0], str) and getattr(task, "name", None) != SWEEP_TASK:
        context["job_id"] = args[0]
    structlog.contextvars.bind_contextvars(**context)


@task_postrun.connect  # type: ignore[untyped-decorator]
def _unbind_task_context(**_: Any) -> None:
    structlog.contextvars.clear_contextvars()


@worker_init.connect  # type: ignore[untyped-decorator]
def _prepare_worker(sender: Any = None, **_: Any) -> None:
    ensure_broker_dirs(sender.app.conf)
    port = WorkflowOptions().metrics_port
    if port:
        from flywheel.workflow.metrics import start_exporter

        start_exporter(port)


def create_celery_app(
    settings: Settings | None = None, options: WorkflowOptions | None = None
) -> Celery:
    """A Celery app on the configured broker, with the workflow's tasks registered."""
    settings = settings or get_settings()
    options = options or WorkflowOptions()
    celery = Celery("flywheel", set_as_current=False)
    celery.conf.update(celery_config(settings, options))
    celery.conf.include = ["flywheel.workflow.tasks"]
    return celery


app = create_celery_app()
"""The process-wide app (``celery -A flywheel.workflow.celery_app worker``)."""
