"""The NeMo Microservices Platform (NMP) adapter of the model-platform port.

Hosts (nmp-api.md §2.1): ``base_url`` = N (Entity Store, DMS, Customizer, Evaluator),
``datastore_url`` = D (Data Store), ``nim_url`` = P (NIM Proxy). N and P are driven with the
official ``nemo-microservices`` SDK; D has no SDK resource and is spoken over raw HTTP
(see :mod:`flywheel.platforms.nemo.datastore`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import nemo_microservices as nm

from flywheel.config.schema import CandidateModel, JobConfig
from flywheel.errors import ConfigError
from flywheel.platforms.base import (
    DatasetFiles,
    EvalType,
    EvaluationOutcome,
    Handle,
    ModelPlatform,
    Progress,
)
from flywheel.platforms.nemo.calls import NmpCalls, RetryPolicy
from flywheel.platforms.nemo.context import NmpContext
from flywheel.platforms.nemo.customizations import NmpCustomizations
from flywheel.platforms.nemo.datasets import NmpDatasets
from flywheel.platforms.nemo.datastore import DataStore
from flywheel.platforms.nemo.deployments import NmpDeployments
from flywheel.platforms.nemo.evaluations import NmpEvaluations
from flywheel.platforms.nemo.leftovers import NmpLeftovers
from flywheel.platforms.nemo.tls import CertificateErrorTransport, tls_verify

if TYPE_CHECKING:
    from flywheel.settings import Settings

DEFAULT_NAMESPACE = "dfwbp"


class NemoPlatform:
    """Datasets, deployments, evaluation and customization on NMP."""

    name = "nemo"

    def __init__(
        self,
        *,
        base_url: str,
        datastore_url: str,
        nim_url: str,
        token: str | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        timeout_s: float = 60.0,
        retry: RetryPolicy | None = None,
        ca_bundle: Path | None = None,
        verify_ssl: bool = True,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        timeout = httpx.Timeout(timeout_s, connect=min(5.0, timeout_s))
        calls = NmpCalls(retry=retry or RetryPolicy())
        verify = tls_verify(
            ca_bundle, verify_ssl=verify_ssl, urls=(base_url, datastore_url, nim_url)
        )
        # max_retries=0: our RetryPolicy is the only retry layer (the SDK would otherwise
        # retry 409s and 5xx on its own, three times each; nmp-api.md §2.2).
        sdk = nm.NeMoMicroservices(
            base_url=base_url,
            inference_base_url=nim_url,
            timeout=timeout,
            max_retries=0,
            default_headers=headers,
            http_client=nm.DefaultHttpxClient(
                timeout=timeout, transport=CertificateErrorTransport(verify)
            ),
        )
        self._http = httpx.Client(
            timeout=timeout, headers=headers, transport=CertificateErrorTransport(verify)
        )
        datastore = DataStore(base_url=datastore_url, http=self._http, calls=calls)
        ctx = NmpContext(
            sdk=sdk, calls=calls, datastore=datastore, namespace=namespace, nim_url=nim_url
        )
        self._sdk = sdk
        self._ctx = ctx
        self._datasets = NmpDatasets(ctx)
        self._deployments = NmpDeployments(ctx)
        self._customizations = NmpCustomizations(ctx)
        self._evaluations = NmpEvaluations(ctx, self._deployments)
        self._leftovers = NmpLeftovers(
            ctx, self._deployments, self._customizations, self._evaluations
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> NemoPlatform:
        """Build from ``NMP_BASE_URL``, ``NMP_DATASTORE_URL``, ``NMP_NIM_URL``, ``NMP_TOKEN``.

        TLS: ``NMP_CA_BUNDLE`` (a private CA) and ``NMP_VERIFY_SSL`` (default true).
        """
        if not settings.nmp_base_url:
            raise ConfigError("NMP_BASE_URL is not set; the nemo platform needs it")
        missing = [
            env
            for env, value in (
                ("NMP_DATASTORE_URL", settings.nmp_datastore_url),
                ("NMP_NIM_URL", settings.nmp_nim_url),
            )
            if not value
        ]
        if missing:
            raise ConfigError(f"{' and '.join(missing)} must be set with NMP_BASE_URL")
        token = settings.nmp_token.get_secret_value() if settings.nmp_token else None
        return cls(
            base_url=settings.nmp_base_url,
            datastore_url=str(settings.nmp_datastore_url),
            nim_url=str(settings.nmp_nim_url),
            token=token,
            ca_bundle=settings.nmp_ca_bundle,
            verify_ssl=settings.nmp_verify_ssl,
        )

    def close(self) -> None:
        """Release the HTTP connections."""
        self._http.close()
        self._sdk.close()

    # -- datasets ------------------------------------------------------------------------

    def upload_datasets(self, *, job_id: str, files: DatasetFiles) -> Handle:
        """Upload the job's files to the Data Store and register them in the Entity Store."""
        return self._datasets.upload(job_id=job_id, files=files)

    def delete_datasets(self, handle: Handle) -> None:
        """Delete the registered datasets and their repositories (idempotent)."""
        self._datasets.delete(handle)

    # -- deployments ---------------------------------------------------------------------

    def start_deployment(self, *, job_id: str, candidate: CandidateModel) -> Handle:
        """Deploy the candidate's NIM through DMS, or reuse one already served."""
        return self._deployments.start(job_id=job_id, candidate=candidate)

    def poll_deployment(self, handle: Handle) -> Progress:
        """Report the deployment; ``ready`` once DMS says so and NIM Proxy lists the model."""
        return self._deployments.poll(handle)

    def shutdown_deployment(self, handle: Handle) -> None:
        """Delete the deployment if this job created it (idempotent)."""
        self._deployments.shutdown(handle)

    def is_model_served(self, model_name: str) -> bool:
        """True when NIM Proxy lists ``model_name`` now (``GET {P}/v1/models``)."""
        return model_name in self._ctx.served_models()

    def peak_gpus(self, candidate: CandidateModel) -> int:
        """Twice ``gpus`` for a customized embedder: its output is served beside the base NIM.

        NMP customizes embedding models full-weight (or merged), and such an output is only
        served once deployed (see ``NmpEvaluations``), while the base NIM is still up.
        """
        if candidate.model_type == "embedding" and candidate.customization_enabled:
            return 2 * candidate.gpus
        return candidate.gpus

    def release_job(self, job_id: str) -> list[str]:
        """Stop what still runs tagged with ``job_id`` (work whose start answer was lost)."""
        return self._leftovers.release(job_id)

    # -- evaluation ----------------------------------------------------------------------

    def start_evaluation(
        self,
        *,
        job_id: str,
        candidate: CandidateModel,
        eval_type: EvalType,
        datasets: Handle,
        config: JobConfig,
        deployment: Handle | None = None,
        customization: Handle | None = None,
    ) -> Handle:
        """Start an Evaluator job for one candidate variant."""
        return self._evaluations.start(
            job_id=job_id,
            candidate=candidate,
            eval_type=eval_type,
            datasets=datasets,
            config=config,
            deployment=deployment,
            customization=customization,
        )

    def poll_evaluation(self, handle: Handle) -> Progress:
        """Report the evaluation job."""
        return self._evaluations.poll(handle)

    def evaluation_outcome(self, handle: Handle) -> EvaluationOutcome:
        """The Evaluator's scores by our names, with per-item results where it has them."""
        return self._evaluations.outcome(handle)

    def cancel_evaluation(self, handle: Handle) -> None:
        """Cancel the evaluation job unless it has ended, and stop what serves its model."""
        self._evaluations.cancel(handle)

    def delete_evaluation(self, handle: Handle) -> None:
        """Delete the evaluation job and stop what serves its model (idempotent)."""
        self._evaluations.delete(handle)

    # -- customization -------------------------------------------------------------------

    def start_customization(
        self, *, job_id: str, candidate: CandidateModel, datasets: Handle, config: JobConfig
    ) -> Handle:
        """Create a customization config and job with a run-unique output model."""
        return self._customizations.start(
            job_id=job_id, candidate=candidate, datasets=datasets, config=config
        )

    def poll_customization(self, handle: Handle) -> Progress:
        """Report training progress; ``completed`` once a LoRA output is served."""
        return self._customizations.poll(handle)

    def cancel_customization(self, handle: Handle) -> None:
        """Cancel the customization job unless it has ended (idempotent)."""
        self._customizations.cancel(handle)

    def delete_customization(self, handle: Handle) -> None:
        """Delete the output model entity and the job's customization config (idempotent)."""
        self._customizations.delete(handle)


def _implements_the_port(platform: NemoPlatform) -> ModelPlatform:
    # Never called: makes mypy prove NemoPlatform satisfies the ModelPlatform protocol.
    return platform
