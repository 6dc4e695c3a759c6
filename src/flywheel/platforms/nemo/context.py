"""What every NMP operation shares: the SDK client, the call policy, the Data Store, names."""

from __future__ import annotations

import contextlib
import re
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


def slug(text: str, *, limit: int = 40) -> str:
    """A lowercase ``[a-z0-9-]`` name fragment (NMP names must be path- and k8s-safe)."""
    cleaned = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return cleaned[:limit].strip("-") or "x"


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
