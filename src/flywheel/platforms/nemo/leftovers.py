"""Find and stop NMP work a flywheel job started but never recorded.

A create NMP performs but whose answer never reaches us (a timeout after the platform acted,
for longer than the retry budget) leaves a deployment, customization or evaluation with no
handle in the job's state, so the job's own shutdown cannot stop it. Everything we create
carries ``custom_fields.flywheel_job_id``; once the job has ended and stopped what it
recorded, whatever still runs with its id is such a leftover and is stopped here.

Lists are scanned newest first (``LOOKUP_PAGES`` pages) and matched here, not only by a
server-side filter: the Customizer has no ``custom_fields`` filter, and a leftover is as
young as the job.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

from flywheel.platforms.nemo.calls import as_dict
from flywheel.platforms.nemo.context import (
    CUSTOMIZER,
    DMS,
    EVALUATOR,
    LOOKUP_PAGE_SIZE,
    LOOKUP_PAGES,
    OWNER_FIELD,
    NmpContext,
)
from flywheel.platforms.nemo.customizations import NmpCustomizations
from flywheel.platforms.nemo.deployments import NmpDeployments
from flywheel.platforms.nemo.evaluations import NmpEvaluations

#: Job statuses that hold nothing any more (Customizer and Evaluator share these names).
_JOB_ENDED = frozenset({"completed", "failed", "cancelled", "cancelling", "deleted"})
#: Deployment statuses that serve nothing and need no delete.
_DEPLOYMENT_ENDED = frozenset({"failed", "cancelled", "deleted", "deleting"})


def _page_args(number: int) -> dict[str, Any]:
    return {"page": number, "page_size": LOOKUP_PAGE_SIZE, "sort": "-created_at"}


class NmpLeftovers:
    """Stops the deployments, customizations and evaluations still live for an ended job."""

    def __init__(
        self,
        ctx: NmpContext,
        deployments: NmpDeployments,
        customizations: NmpCustomizations,
        evaluations: NmpEvaluations,
    ) -> None:
        self._ctx = ctx
        self._deployments = deployments
        self._customizations = customizations
        self._evaluations = evaluations

    def _owned(
        self, service: str, path: str, list_page: Callable[[int], object], job_id: str
    ) -> Iterator[dict[str, Any]]:
        """Rows of ``GET path`` (newest pages first) tagged with ``job_id``."""
        for number in range(1, LOOKUP_PAGES + 1):
            page = self._ctx.calls.run(service, f"GET {path}", functools.partial(list_page, number))
            rows = [as_dict(row) for row in as_dict(page).get("data") or []]
            yield from (
                r for r in rows if (r.get("custom_fields") or {}).get(OWNER_FIELD) == job_id
            )
            if len(rows) < LOOKUP_PAGE_SIZE:
                return

    def release(self, job_id: str) -> list[str]:
        """Stop every live object tagged with ``job_id``; describe each one stopped."""
        sdk = self._ctx.sdk
        stopped: list[str] = []
        evaluations = self._owned(
            EVALUATOR,
            "/v1/evaluation/jobs",
            lambda n: sdk.evaluation.jobs.list(
                filter={"custom_fields": {OWNER_FIELD: job_id}}, **_page_args(n)
            ),
            job_id,
        )
        customizations = self._owned(
            CUSTOMIZER,
            "/v1/customization/jobs",
            lambda n: sdk.customization.jobs.list(**_page_args(n)),
            job_id,
        )
        for kind, jobs, cancel in (
            ("evaluation", evaluations, self._evaluations.cancel),
            ("customization", customizations, self._customizations.cancel),
        ):
            for job in jobs:
                if str(job.get("status")) not in _JOB_ENDED:
                    cancel({"job_id": str(job["id"])})
                    stopped.append(f"{kind} job {job['id']}")
        # Deployments last: an evaluation stopped above may have been using one.
        for record in self._owned(
            DMS,
            "/v1/deployment/model-deployments",
            lambda n: sdk.deployment.model_deployments.list(**_page_args(n)),
            job_id,
        ):
            status = str((record.get("status_details") or {}).get("status") or "unknown")
            if status in _DEPLOYMENT_ENDED:
                continue
            ns, name = str(record.get("namespace") or "default"), str(record["name"])
            self._deployments.shutdown(
                {"kind": "nim", "owned": True, "namespace": ns, "name": name}
            )
            stopped.append(f"deployment {ns}/{name}")
        return stopped
