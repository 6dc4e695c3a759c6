"""Host D: Data Store namespaces and the Hugging Face Hub API mount (nmp-api.md §3)."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from tests.fake_nmp.common import conflict, install_faults, json_body, not_found
from tests.fake_nmp.state import FakeNMP, now

HF = "/v1/hf"


def create_datastore_app(state: FakeNMP) -> FastAPI:
    """The D host app over ``state``."""
    app = FastAPI(title="fake NMP (D)")
    install_faults(app, state, "D")

    @app.post("/v1/datastore/namespaces")
    async def create_namespace(request: Request) -> Response:
        raw = (await request.body()).decode()
        if request.headers.get("content-type", "").startswith("application/json"):
            namespace = str((await json_body(request)).get("namespace") or "")
        else:
            namespace = (parse_qs(raw).get("namespace") or [""])[0]
        if not namespace:
            detail = [{"loc": ["body", "namespace"], "msg": "Field required", "type": "missing"}]
            return JSONResponse({"detail": detail}, status_code=422)
        with state.lock:
            if namespace in state.ds_namespaces:
                return conflict("namespace", namespace)
            record = {"namespace": namespace, "created_at": now(), "updated_at": now()}
            state.ds_namespaces[namespace] = record
            state.record("created", "datastore_namespace", namespace, "POST", request.url.path)
        return JSONResponse(record, status_code=201)

    @app.get("/v1/datastore/namespaces/{namespace}")
    def get_namespace(namespace: str) -> Response:
        with state.lock:
            if namespace not in state.ds_namespaces:
                return not_found("namespace", namespace)
            return JSONResponse(state.ds_namespaces[namespace])

    @app.delete("/v1/datastore/namespaces/{namespace}")
    def delete_namespace(namespace: str, request: Request) -> Response:
        with state.lock:
            if state.ds_namespaces.pop(namespace, None) is None:
                return not_found("namespace", namespace)
            state.record("deleted", "datastore_namespace", namespace, "DELETE", request.url.path)
        return Response(status_code=204)

    @app.post(HF + "/api/repos/create")
    async def create_repo(request: Request) -> Response:
        body = await json_body(request)
        repo = f"{body.get('organization')}/{body.get('name')}"
        with state.lock:
            if repo in state.repos:
                return conflict("repository", repo)
            state.repos[repo] = {}
            state.record("created", "repo", repo, "POST", request.url.path)
        return JSONResponse({"url": f"{request.base_url}datasets/{repo}"})

    @app.delete(HF + "/api/repos/delete")
    async def delete_repo(request: Request) -> Response:
        body = await json_body(request)
        repo = f"{body.get('organization')}/{body.get('name')}"
        with state.lock:
            if state.repos.pop(repo, None) is None:
                return not_found("repository", repo)
            state.record("deleted", "repo", repo, "DELETE", request.url.path)
        return Response(status_code=200)

    @app.post(HF + "/api/datasets/{namespace}/{name}/preupload/{revision}")
    async def preupload(namespace: str, name: str, revision: str, request: Request) -> Response:
        body = await json_body(request)
        with state.lock:
            if f"{namespace}/{name}" not in state.repos:
                return not_found("repository", f"{namespace}/{name}")
        files = [
            {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
            for f in body.get("files") or []
        ]
        return JSONResponse({"files": files})

    @app.post(HF + "/api/datasets/{namespace}/{name}/commit/{revision}")
    async def commit(namespace: str, name: str, revision: str, request: Request) -> Response:
        repo = f"{namespace}/{name}"
        lines = [json.loads(line) for line in (await request.body()).splitlines() if line.strip()]
        with state.lock:
            files = state.repos.get(repo)
            if files is None:
                return not_found("repository", repo)
            digest = hashlib.sha1(usedforsecurity=False)
            for line in lines:
                if line.get("key") == "file":
                    value = line["value"]
                    content = base64.b64decode(value["content"])
                    files[value["path"]] = content
                    digest.update(content)
                    state.record("updated", "repo_file", f"{repo}/{value['path']}", "POST",
                                 request.url.path)  # fmt: skip
        return JSONResponse({"commitUrl": "", "commitOid": digest.hexdigest()})

    @app.get(HF + "/datasets/{namespace}/{name}/resolve/{revision}/{path:path}")
    def resolve(namespace: str, name: str, revision: str, path: str) -> Response:
        with state.lock:
            content = state.repos.get(f"{namespace}/{name}", {}).get(path)
        if content is None:
            return not_found("file", f"{namespace}/{name}/{path}")
        return Response(content, media_type="application/octet-stream")

    @app.get(HF + "/api/datasets/{namespace}/{name}/tree/{revision}")
    def tree(namespace: str, name: str, revision: str) -> Response:
        with state.lock:
            files = state.repos.get(f"{namespace}/{name}")
            if files is None:
                return not_found("repository", f"{namespace}/{name}")
            entries: list[dict[str, Any]] = [
                {
                    "type": "file",
                    "path": path,
                    "size": len(content),
                    "oid": hashlib.sha1(content, usedforsecurity=False).hexdigest(),
                }
                for path, content in sorted(files.items())
            ]
        return JSONResponse(entries)

    return app
