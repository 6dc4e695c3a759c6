"""What every NMP operation shares: the SDK client, the call policy, the Data Store, names."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flywheel.platforms.nemo.calls import NmpCalls, NmpExists, as_dict
from flywheel.platforms.nemo.datastore import DataStore

ENTITY_STORE = "Entity Store"
DMS = "Deployment Management"
CUSTOMIZER = "Customizer"
EVALUATOR = "Evaluator"
NIM_PROXY = "NIM Proxy"

#: custom_fields key that marks platform objects this service created, by job id.
OWNER_FIELD = "flywheel_job_id"
#: custom_fields key naming one create (job, candidate, kind); a retried or repeated start
#: looks it up and adopts the job instead of creating a second one.
CREATE_KEY_FIELD = "flywheel_create_key"
#: How many of the newest jobs a create-key lookup scans (the job sought is seconds old).
LOOKUP_PAGES, LOOKUP_PAGE_SIZE = 4, 50


def slug(text: str, *, limit: int = 40) -> str:
    """A lowercase ``[a-z0-9-]`` name fragment (NMP names must be path- and k8s-safe)."""
    cleaned = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return cleaned[:limit].strip("-") or "x"


def create_key(job_id: str, candidate: str, kind: str) -> str:
    """The ``custom_fields`` value that identifies one create of a flywheel job."""
    return f"{job_id}/{candidate}/{kind}"


def find_tagged(
    list_page: Callable[[int], object],
    key: str,
    *,
    usable: Callable[[dict[str, Any]], bool] = lambda _: True,
) -> dict[str, Any] | None:
    """The newest listed job whose ``custom_fields`` carry ``key`` (and that is ``usable``).

    ``list_page(n)`` returns page ``n`` (1-based, newest first). Matching is done here too,
    not only by the server's ``filter[custom_fields]``, so a server that ignores the filter
    (or, like the Customizer, has none) still finds the right job.
    """
    for number in range(1, LOOKUP_PAGES + 1):
        rows: list[Any] = list(as_dict(list_page(number)).get("data") or [])
        for row in rows:
            job = as_dict(row)
            if (job.get("custom_fields") or {}).get(CREATE_KEY_FIELD) == key and usable(job):
                return job
        if len(rows) < LOOKUP_PAGE_SIZE:
            return None
    return None


@dataclass
class NmpContext:
    """Shared clients and settings of one NMP installation."""

    sdk: Any  # nemo_microservices.NeMoMicroservices; typed loosely: its params are TypedDicts
    calls: NmpCalls
    datastore: DataStore
    namespace: str
    nim_url: str

    def served_models(self) -> set[str]:
        """Model ids the NIM Proxy lists now (``GET {P}/v1/models``)."""
        listing = self.calls.run(
            NIM_PROXY, "GET /v1/models", lambda: self.sdk.inference.models.list()
        )
        return {str(item.get("id")) for item in as_dict(listing).get("data") or []}

    def ensure_namespace(self, namespace: str) -> None:
        """Create ``namespace`` in the Entity Store and the Data Store (both need it, §3.1)."""
        with contextlib.suppress(NmpExists):
            self.calls.run(
                ENTITY_STORE,
                "POST /v1/namespaces",
                lambda: self.sdk.namespaces.create(id=namespace),
            )
        self.datastore.ensure_namespace(namespace)
