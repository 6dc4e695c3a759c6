"""The fake NMP itself keeps the contract (nmp-api.md §11) when driven by the official SDK."""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Iterator

import httpx
import nemo_microservices as nm
import pytest
from tests.fake_nmp import FakeNMP, FakeNMPServer, run_fake_nmp


@pytest.fixture
def fake() -> Iterator[FakeNMPServer]:
    with run_fake_nmp(FakeNMP(base_models=("meta/llama-3.2-1b-instruct",))) as server:
        yield server


@pytest.fixture
def sdk(fake: FakeNMPServer) -> Iterator[nm.NeMoMicroservices]:
    client = nm.NeMoMicroservices(
        base_url=fake.base_url, inference_base_url=fake.nim_url, max_retries=0, timeout=5
    )
    yield client
    client.close()


def test_ids_duplicates_and_pagination(fake: FakeNMPServer, sdk: nm.NeMoMicroservices) -> None:
    for index in range(12):
        sdk.datasets.create(
            name=f"ds-{index}", namespace="ns", files_url=f"hf://datasets/ns/{index}"
        )
    created = sdk.datasets.retrieve("ds-0", namespace="ns")
    assert created.id is not None
    assert created.id.startswith("dataset-")
    assert len({d.name for d in sdk.datasets.list()}) == 12  # auto-paginates page by page
    assert fake.state.requested("GET", "/v1/datasets")
    past_end = httpx.get(f"{fake.base_url}/v1/datasets", params={"page": 3}).json()
    assert past_end["data"] == []
    assert past_end["pagination"]["total_pages"] == 2
    duplicate = httpx.post(
        f"{fake.base_url}/v1/datasets", json={"name": "ds-0", "namespace": "ns", "files_url": "x"}
    )
    assert duplicate.status_code == 409
    assert duplicate.headers["x-should-retry"] == "false"
    with pytest.raises(nm.ConflictError):
        sdk.datasets.create(name="ds-0", namespace="ns", files_url="x")
    invalid = httpx.post(f"{fake.base_url}/v1/customization/configs", json={"name": "c"})
    assert invalid.status_code == 422
    assert {tuple(d["loc"]) for d in invalid.json()["detail"]} == {
        ("body", "max_seq_length"),
        ("body", "training_options"),
    }
    with pytest.raises(nm.NotFoundError):
        sdk.customization.jobs.status("cust-unknown")


def test_reference_client_cancel_path_is_not_served(fake: FakeNMPServer) -> None:
    answer = httpx.post(f"{fake.base_url}/v1/customizations/cust-x/cancel")
    assert answer.status_code == 404


def test_work_can_advance_with_wall_time() -> None:
    with run_fake_nmp(FakeNMP(advance="time", step_seconds=0.05)) as fake:
        config = {"model": "m/x", "nim_deployment": {"image_name": "i", "image_tag": "t", "gpu": 1}}
        url = f"{fake.base_url}/v1/deployment/model-deployments"
        httpx.post(url, json={"name": "x", "namespace": "ns", "config": config})
        time.sleep(0.2)
        record = httpx.get(f"{url}/ns/x").json()
        assert record["status_details"]["status"] == "ready"
        served = httpx.get(f"{fake.nim_url}/v1/models").json()["data"]
        assert "m/x" in {item["id"] for item in served}


def test_nim_proxy_answers_chat_and_embeddings(
    fake: FakeNMPServer, sdk: nm.NeMoMicroservices
) -> None:
    model = "meta/llama-3.2-1b-instruct"
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {}}}]
    chat = sdk.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], tools=tools
    )
    assert chat.choices[0].message.tool_calls[0].function.name == "weather"
    fake.state.served["embedder"] = 0
    embedded = httpx.post(
        f"{fake.nim_url}/v1/embeddings", json={"model": "embedder", "input": ["a", "b"]}
    ).json()
    assert [item["index"] for item in embedded["data"]] == [0, 1]
    unknown = httpx.post(f"{fake.nim_url}/v1/embeddings", json={"model": "nope", "input": "a"})
    assert unknown.status_code == 404


def test_data_store_tree_and_resolve(fake: FakeNMPServer) -> None:
    hf = f"{fake.datastore_url}/v1/hf"
    httpx.post(
        f"{hf}/api/repos/create", json={"name": "r", "organization": "ns", "type": "dataset"}
    )
    commit = (
        '{"key": "header", "value": {"summary": "s", "description": ""}}\n'
        '{"key": "file", "value": {"content": "aGVsbG8=", "path": "a/b.txt", "encoding": "base64"}}'
    )
    answer = httpx.post(f"{hf}/api/datasets/ns/r/commit/main", content=commit).json()
    assert len(answer["commitOid"]) == 40
    assert httpx.get(f"{hf}/datasets/ns/r/resolve/main/a/b.txt").content == b"hello"
    tree = httpx.get(f"{hf}/api/datasets/ns/r/tree/main").json()
    assert [entry["path"] for entry in tree] == ["a/b.txt"]


def test_custom_fields_filter_lost_answers_and_results_archives(
    fake: FakeNMPServer, sdk: nm.NeMoMicroservices
) -> None:
    config = {"type": "custom", "tasks": {"t": {"type": "chat-completion", "metrics": {}}}}
    target = {"type": "model", "model": "meta/llama-3.2-1b-instruct"}
    fake.state.inject(
        host="N", method="POST", path="^/v1/evaluation/jobs$", status=502, perform=True
    )
    with pytest.raises(nm.InternalServerError):
        sdk.evaluation.jobs.create(config=config, target=target, custom_fields={"k": "a"})
    sdk.evaluation.jobs.create(config=config, target=target, custom_fields={"k": "b"})
    assert len(fake.state.entries("created", "evaluation_job")) == 2  # the 502 one was made
    page = sdk.evaluation.jobs.list(filter={"custom_fields": {"k": "a"}}, page=1, page_size=50)
    assert [job.custom_fields for job in page.data] == [{"k": "a"}]
    job_id = page.data[0].id
    assert job_id is not None

    early = httpx.get(f"{fake.base_url}/v1/evaluation/jobs/{job_id}/download-results")
    assert early.status_code == 404  # nothing to download before completion
    for _ in range(5):
        sdk.evaluation.jobs.retrieve(job_id)
    archive = sdk.evaluation.jobs.download_results(job_id).read()
    with zipfile.ZipFile(io.BytesIO(archive)) as zipped:
        assert {"results.json", "logs/evaluation.log", "results/t/samples.jsonl"} <= set(
            zipped.namelist()
        )
