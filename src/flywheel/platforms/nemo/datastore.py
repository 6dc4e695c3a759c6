"""NMP Data Store (host D): namespaces and the Hugging Face Hub API mount, over raw HTTP.

Raw ``httpx`` rather than the SDK or ``huggingface_hub``, for two reasons:

* the ``nemo-microservices`` SDK has no Data Store resource at all (nmp-api.md §1), so
  namespaces are plain form posts;
* ``huggingface_hub`` refuses *every* request while ``HF_HUB_OFFLINE=1`` is set, even to a
  custom ``endpoint`` (its request hook raises ``OfflineModeIsEnabled``), and that variable
  is set process-wide where the local platform must stay offline. The few HF wire calls the
  Data Store needs (create repo, preupload, commit, delete repo; nmp-api.md §3.2, as sent by
  ``huggingface_hub`` 0.30) are simple enough to speak directly, which also keeps them
  under our own timeout and retry policy.
"""

from __future__ import annotations

import base64
import json

import httpx

from flywheel.errors import PlatformError
from flywheel.platforms.nemo.calls import NmpCalls, NmpExists, NmpNotFound

SERVICE = "Data Store"
_SAMPLE_BYTES = 512


class DataStore:
    """The Data Store at ``base_url`` (``{D}``; the HF mount is ``{D}/v1/hf``)."""

    def __init__(self, *, base_url: str, http: httpx.Client, calls: NmpCalls) -> None:
        self._base = base_url.rstrip("/")
        self._hf = f"{self._base}/v1/hf"
        self._http = http
        self._calls = calls

    def ensure_namespace(self, namespace: str) -> None:
        """Create ``namespace`` unless it exists (409 and 422 mean it does, §3.1)."""
        try:
            self._calls.http(
                self._http,
                SERVICE,
                "POST",
                f"{self._base}/v1/datastore/namespaces",
                data={"namespace": namespace},
            )
        except NmpExists:
            return
        except PlatformError as exc:
            if "HTTP 422" in str(exc):  # older Data Stores answer 422 for an existing one
                return
            raise

    def create_repo(self, repo_id: str) -> None:
        """Create the dataset repository ``namespace/name`` (idempotent)."""
        namespace, name = repo_id.split("/", 1)
        body = {"name": name, "organization": namespace, "type": "dataset"}
        try:
            self._calls.http(self._http, SERVICE, "POST", f"{self._hf}/api/repos/create", json=body)
        except NmpExists:
            return

    def upload_file(self, repo_id: str, path_in_repo: str, content: bytes) -> str:
        """Commit one file to ``main`` (preupload, then an ndjson commit); return the commit id."""
        base = f"{self._hf}/api/datasets/{repo_id}"
        sample = base64.b64encode(content[:_SAMPLE_BYTES]).decode()
        files = [{"path": path_in_repo, "sample": sample, "size": len(content)}]
        modes = self._calls.http(
            self._http, SERVICE, "POST", f"{base}/preupload/main", json={"files": files}
        ).json()
        for entry in modes.get("files", []):
            if entry.get("uploadMode") not in (None, "regular"):
                # Data Store always answers "regular" in practice (§14.9); LFS is not spoken here.
                raise PlatformError(
                    f"NMP {SERVICE}: preupload of {path_in_repo} asked for upload mode "
                    f"{entry.get('uploadMode')!r}, which this client does not support"
                )
        lines = [
            {"key": "header", "value": {"summary": f"Upload {path_in_repo}", "description": ""}},
            {
                "key": "file",
                "value": {
                    "content": base64.b64encode(content).decode(),
                    "path": path_in_repo,
                    "encoding": "base64",
                },
            },
        ]
        payload = "\n".join(json.dumps(line) for line in lines).encode()
        answer = self._calls.http(
            self._http,
            SERVICE,
            "POST",
            f"{base}/commit/main",
            content=payload,
            headers={"Content-Type": "application/x-ndjson"},
        ).json()
        return str(answer.get("commitOid") or "")

    def delete_repo(self, repo_id: str) -> None:
        """Delete the dataset repository (idempotent: a missing one is success)."""
        namespace, name = repo_id.split("/", 1)
        body = {"name": name, "organization": namespace, "type": "dataset"}
        try:
            self._calls.http(
                self._http, SERVICE, "DELETE", f"{self._hf}/api/repos/delete", json=body
            )
        except NmpNotFound:
            return
