"""The API's composition root: settings, stores and services, built once per app.

Stores passed in (tests, embedding) belong to the caller; stores the app opens itself are
opened in the lifespan and closed when it ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from flywheel import __version__
from flywheel.api.deps import Services
from flywheel.api.errors import install_error_handlers
from flywheel.api.metrics import ApiMetrics
from flywheel.api.middleware import BodySizeLimitMiddleware, RequestContextMiddleware
from flywheel.api.routes import configs, console_support, health, jobs, keys, logs, workloads
from flywheel.config.resolve import load_base_config
from flywheel.console import mount_console
from flywheel.domain.jobs import Job
from flywheel.services.auth import FailedAuthLimiter
from flywheel.services.configs import ConfigService
from flywheel.services.health import nmp_pinger
from flywheel.services.jobs import JobService
from flywheel.services.workflow_port import DeferredLauncher, WorkflowLauncher
from flywheel.settings import Settings, get_settings
from flywheel.stores.base import LogStore, StateStore
from flywheel.stores.registry import open_log_store, open_state_store

log = structlog.get_logger(__name__)

_DESCRIPTION = """\
Flywheel turns production LLM traffic into datasets and finds cheaper models that do the
same work.

**Auth.** Send an API key as `Authorization: Bearer fw_...` on every endpoint except
`/api/health`. Roles: `viewer` (read) ⊂ `operator` (jobs, logs) ⊂ `admin` (configs, keys).
A key scoped to some `client_id`s sees only their jobs and logs; others answer 404.

**Status vocabulary.** One set of job statuses everywhere: `pending`, `running`,
`cancelling`, `cancelled`, `completed`, `failed` (the blueprint's API said `queued`, D7).
"""


def _platform_pinger(settings: Settings) -> Callable[[], None] | None:
    """The health check's ping of NMP (None for the in-process local platform).

    Built once per app: the TLS setup is read (and, with verification off, warned about)
    here rather than on every probe.
    """
    if settings.platform_kind != "nemo" or settings.nmp_base_url is None:
        return None
    from flywheel.platforms.nemo.tls import tls_verify  # the nemo extra: only in NMP mode

    token = settings.nmp_token.get_secret_value() if settings.nmp_token is not None else None
    verify = tls_verify(
        settings.nmp_ca_bundle, verify_ssl=settings.nmp_verify_ssl, urls=(settings.nmp_base_url,)
    )
    return nmp_pinger(settings.nmp_base_url, token=token, verify=verify)


def create_app(
    settings: Settings | None = None,
    *,
    state_store: StateStore | None = None,
    log_store: LogStore | None = None,
    workflow: WorkflowLauncher | None = None,
) -> FastAPI:
    """Build the API. Unset arguments come from settings (stores) or defaults (workflow).

    ``workflow`` is the launcher jobs are handed to. Production front ends pass the Celery
    launcher (``flywheel serve`` does: :func:`flywheel.workflow.launcher.create_launcher`).
    Left unset, the app gets a :class:`DeferredLauncher`, which only records what it was
    asked (what API tests want) and runs nothing, so it logs a warning saying so.
    """
    settings = settings or get_settings()
    metrics = ApiMetrics()
    launcher: WorkflowLauncher
    if workflow is None:
        launcher = DeferredLauncher()
        log.warning(
            "workflow_launcher_deferred",
            detail="create_app() got no workflow launcher: jobs will be stored but stay "
            "pending; pass create_launcher(settings, state) to run them",
        )
    else:
        launcher = workflow

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned: list[StateStore | LogStore] = []
        state = state_store
        if state is None:
            state = open_state_store(settings.state_store_url)
            owned.append(state)
        metrics.watch_jobs(state)
        log_st = log_store
        if log_st is None:
            log_st = open_log_store(
                settings.log_store_url,
                index=settings.es_collection_name,
                verify_certs=settings.es_verify_certs,
            )
            owned.append(log_st)
        base = load_base_config(settings.config_path)

        def count_created(job: Job) -> None:
            metrics.jobs_created.labels(job_type=job.job_type.value).inc()

        app.state.services = Services(
            settings=settings,
            state=state,
            logs=log_st,
            jobs=JobService(
                state=state,
                logs=log_st,
                launcher=launcher,
                base_config=base,
                on_created=count_created,
            ),
            configs=ConfigService(store=state, base_config=base),
            limiter=FailedAuthLimiter(),
            metrics=metrics,
            ping_platform=_platform_pinger(settings),
        )
        try:
            yield
        finally:
            for store in owned:
                store.close()

    app = FastAPI(
        title="Flywheel API",
        version=__version__,
        description=_DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.launcher = launcher
    install_error_handlers(app)
    for router in (
        console_support.results_router,
        jobs.router,
        configs.router,
        logs.router,
        keys.router,
        workloads.router,
        console_support.auth_router,
        health.health_router,
        health.metrics_router,
    ):
        app.include_router(router)
    mount_console(app)
    # Innermost of ours: its 413s still get CORS headers and a request id.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_request_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID"],
        )
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    return app
