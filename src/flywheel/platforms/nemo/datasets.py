"""Datasets on NMP: Data Store repositories registered as Entity Store datasets (§3, §4.2)."""

from __future__ import annotations

import contextlib
import functools
import json
from pathlib import Path
from typing import Any

from flywheel.domain.metrics.judge import eval_rows_judged_as_tool_calling
from flywheel.platforms.base import DatasetFiles, Handle
from flywheel.platforms.nemo.calls import NmpExists, NmpNotFound
from flywheel.platforms.nemo.context import ENTITY_STORE, NmpContext, slug

PROJECT = "flywheel"


def _is_tool_calling(path: Path | None) -> bool:
    """Whether the eval set is judged for tool-call correctness (the shared rule over its
    rows, :func:`~flywheel.domain.metrics.judge.eval_rows_judged_as_tool_calling`)."""
    if path is None or not path.is_file():
        return False
    rows = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                rows.append(row)
    return eval_rows_judged_as_tool_calling(rows)


class NmpDatasets:
    """Upload and delete a job's datasets."""

    def __init__(self, ctx: NmpContext) -> None:
        self._ctx = ctx

    def upload(self, *, job_id: str, files: DatasetFiles) -> Handle:
        ns = self._ctx.namespace
        self._ctx.ensure_namespace(ns)
        base = f"fw-{slug(job_id)}"
        handle: Handle = {
            "namespace": ns,
            "repos": [],
            "train_dataset": None,
            "eval_files": {},
            "icl_files": {},
            "beir_files_url": None,
            "workload": "tool_calling" if _is_tool_calling(files.eval) else "generic",
        }
        if files.train is not None or files.validation is not None:
            name = f"{base}-train"
            uploads = {}
            if files.train is not None:
                uploads[f"training/{files.train.name}"] = files.train
            if files.validation is not None:
                uploads[f"validation/{files.validation.name}"] = files.validation
            self._publish(handle, name, uploads, split="train")
            handle["train_dataset"] = name
        if files.eval is not None or files.icl_eval:
            name = f"{base}-eval"
            uploads = {}
            if files.eval is not None:
                uploads["eval_data.jsonl"] = files.eval
                handle["eval_files"]["base"] = f"hf://datasets/{ns}/{name}/eval_data.jsonl"
            for index, (candidate, path) in enumerate(sorted(files.icl_eval.items())):
                in_repo = f"icl/{index}-{slug(candidate)}.jsonl"
                uploads[in_repo] = path
                handle["icl_files"][candidate] = f"hf://datasets/{ns}/{name}/{in_repo}"
            self._publish(handle, name, uploads, split="test")
        if files.beir_dir is not None:
            name = f"{base}-beir"
            root = files.beir_dir
            uploads = {
                str(path.relative_to(root)): path
                for path in sorted(root.rglob("*"))
                if path.is_file()
            }
            self._publish(handle, name, uploads, split="test", fmt="beir")
            handle["beir_files_url"] = f"hf://datasets/{ns}/{name}"
        return handle

    def _publish(
        self,
        handle: Handle,
        name: str,
        uploads: dict[str, Path],
        *,
        split: str,
        fmt: str | None = None,
    ) -> None:
        ns = self._ctx.namespace
        repo = f"{ns}/{name}"
        store = self._ctx.datastore
        store.create_repo(repo)
        handle["repos"].append(repo)
        for in_repo, path in uploads.items():
            store.upload_file(repo, in_repo, path.read_bytes())
        self._register(name, files_url=f"hf://datasets/{repo}", split=split, fmt=fmt)

    def _register(self, name: str, *, files_url: str, split: str, fmt: str | None) -> None:
        """Point the Entity Store dataset ``name`` at the repo: PATCH if it exists, else POST."""
        ns, sdk, calls = self._ctx.namespace, self._ctx.sdk, self._ctx.calls
        fields: dict[str, Any] = {"files_url": files_url, "project": PROJECT, "split": split}
        if fmt is not None:
            fields["format"] = fmt
        item = f"/v1/datasets/{ns}/{name}"
        try:
            calls.run(
                ENTITY_STORE, f"GET {item}", lambda: sdk.datasets.retrieve(name, namespace=ns)
            )
        except NmpNotFound:
            try:
                calls.run(
                    ENTITY_STORE,
                    "POST /v1/datasets",
                    lambda: sdk.datasets.create(name=name, namespace=ns, **fields),
                )
                return
            except NmpExists:
                pass  # created concurrently (an at-least-once retry): fall through to PATCH
        calls.run(
            ENTITY_STORE,
            f"PATCH {item}",
            lambda: sdk.datasets.update(name, namespace=ns, **fields),
        )

    def delete(self, handle: Handle) -> None:
        ns, sdk, calls = handle["namespace"], self._ctx.sdk, self._ctx.calls
        for repo in handle.get("repos", []):
            name = repo.split("/", 1)[1]
            with contextlib.suppress(NmpNotFound):
                calls.run(
                    ENTITY_STORE,
                    f"DELETE /v1/datasets/{ns}/{name}",
                    functools.partial(sdk.datasets.delete, name, namespace=ns),
                )
            self._ctx.datastore.delete_repo(repo)
