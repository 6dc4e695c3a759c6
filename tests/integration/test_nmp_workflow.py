"""Whole jobs through the workflow on real Celery workers against the fake NMP.

The workers run the real :class:`~flywheel.platforms.nemo.NemoPlatform` (built by the
workflow runtime from ``NMP_BASE_URL``, ``NMP_DATASTORE_URL``, ``NMP_NIM_URL`` and
``NMP_TOKEN``) against the three fake NMP apps served by this test process, so the test
can assert on the fake's ledger: what was created, cancelled and deleted, and by whom.

Jobs are created the way the API creates them (``JobService`` with the real Celery launcher,
a named config resolved over the shipped defaults) from logs seeded into SQLite stores.
Each test has its own Redis queue/key prefix (see ``tests/workflow/celery_support.py``).
"""

from __future__ import annotations

import base64
import binascii
import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from tests.fake_nmp import FakeNMP, FakeNMPServer, LedgerEntry, run_fake_nmp
from tests.workflow.celery_support import REDIS_URL, Cluster, make_cluster, redis_available
from tests.workflow.support import CLIENT, RAG, WORKLOAD, chat_logs, retrieval_logs

from flywheel.config.resolve import load_base_config
from flywheel.domain.jobs import Job, JobId, JobStatus, JobType, NamedConfig
from flywheel.services.jobs import JobRequest, JobService
from flywheel.stores.logs_sqlite import SqliteLogStore
from flywheel.stores.state_sqlite import SqliteStateStore
from flywheel.workflow import engine

pytestmark = [
    pytest.mark.skipif(not redis_available(), reason=f"no Redis at {REDIS_URL}"),
    pytest.mark.timeout(180),
]

LLM = "meta/llama-3.2-1b-instruct"  # catalogued: image, tag and Customizer target inherited
FOREIGN = "meta/llama-3.1-8b-instruct"  # already deployed by someone else before the job
JUDGE = "meta/llama-3.3-70b-instruct"  # a deployment nobody in the test owns
EMBEDDER = "nvidia/llama-3.2-nv-embedqa-1b-v2"
NS = "dfwbp"
JUDGE_ENV = "JUDGE_API_KEY"
DEADLINE_S = 90.0


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def state(data_dir: Path) -> Iterator[SqliteStateStore]:
    store = SqliteStateStore.from_url(f"sqlite:///{data_dir / 'state.db'}")
    yield store
    store.close()


@pytest.fixture
def logs(data_dir: Path) -> Iterator[SqliteLogStore]:
    store = SqliteLogStore.from_url(f"sqlite:///{data_dir / 'logs.db'}")
    store.write(chat_logs(40))
    store.write(retrieval_logs(40))
    yield store
    store.close()


@pytest.fixture
def fake() -> Iterator[FakeNMPServer]:
    with run_fake_nmp(FakeNMP()) as server:
        yield server


@pytest.fixture
def secrets() -> dict[str, str]:
    """Fresh secret values, so a hit anywhere can only come from this run."""
    return {"judge": f"sk-test-{uuid.uuid4().hex}", "token": f"nmp-token-{uuid.uuid4().hex}"}


@pytest.fixture
def cluster(
    data_dir: Path,
    state: SqliteStateStore,
    logs: SqliteLogStore,
    fake: FakeNMPServer,
    secrets: dict[str, str],
) -> Iterator[Cluster]:
    yield from make_cluster(
        data_dir,
        state,
        redis_url=REDIS_URL,
        FLYWHEEL_GPU_BUDGET=4,
        FLYWHEEL_PLATFORM="",  # no override: the runtime picks nemo because NMP_BASE_URL is set
        NMP_BASE_URL=fake.base_url,
        NMP_DATASTORE_URL=fake.datastore_url,
        NMP_NIM_URL=fake.nim_url,
        NMP_TOKEN=secrets["token"],
        **{JUDGE_ENV: secrets["judge"]},
    )


@pytest.fixture
def jobs(state: SqliteStateStore, logs: SqliteLogStore, cluster: Cluster) -> JobService:
    """Job submission as the API does it, with the real Celery launcher."""
    return JobService(
        state=state, logs=logs, launcher=cluster.launcher, base_config=load_base_config()
    )


# -- helpers --------------------------------------------------------------------------------


def _deploy_foreign(fake: FakeNMPServer, model: str) -> str:
    """A deployment another owner made before the job ran; returns its ``ns/name`` key."""
    name = model.replace("/", "-")
    config = {"model": model, "nim_deployment": {"image_name": "i", "image_tag": "t", "gpu": 1}}
    created = httpx.post(
        f"{fake.base_url}/v1/deployment/model-deployments",
        json={
            "name": name,
            "namespace": NS,
            "config": config,
            "custom_fields": {"flywheel_job_id": "someone-else"},
        },
    )
    assert created.status_code == 200, created.text
    return f"{NS}/{name}"


def _llm_config(fake: FakeNMPServer) -> dict[str, Any]:
    return {
        "candidates": [{"name": LLM}, {"name": FOREIGN}],
        "data_split_config": {"eval_size": 8, "min_total_records": 20, "limit": 1000},
        "evaluation_config": {"bootstrap_samples": 100},
        "llm_judge_config": {
            "type": "remote",
            "url": f"{fake.nim_url}/v1",
            "model_name": JUDGE,
            "api_key_env": JUDGE_ENV,
        },
    }


def _submit(
    state: SqliteStateStore,
    jobs: JobService,
    body: dict[str, Any],
    *,
    job_type: JobType = JobType.llm_job,
) -> Job:
    name = f"nmp-{job_type.value}-{uuid.uuid4().hex[:6]}"
    state.create_config(NamedConfig(name=name, version=1, job_type=job_type, body=body))
    workload = RAG if job_type is JobType.embedding_job else WORKLOAD
    return jobs.create(
        JobRequest(client_id=CLIENT, workload_id=workload, job_type=job_type, config_name=name)
    )


def _since(fake: FakeNMPServer, mark: int, action: str, kind: str) -> list[LedgerEntry]:
    """Ledger entries after position ``mark`` (what the job did, not the test's setup)."""
    with fake.state.lock:
        entries = fake.state.ledger[mark:]
    return [e for e in entries if e.action == action and e.kind == kind]


def _keys(entries: list[LedgerEntry]) -> set[str]:
    return {e.key for e in entries}


def _eventually(check: Callable[[], bool], what: str, cluster: Cluster) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen\nworkers:\n{cluster.worker_output()}")


def _assert_delete_cleans_up(
    fake: FakeNMPServer, jobs: JobService, cluster: Cluster, job: Job, mark: int
) -> None:
    """DELETE the job: every dataset, evaluation, output model and config it made goes."""
    created_repos = _keys(_since(fake, mark, "created", "repo"))
    created_datasets = _keys(_since(fake, mark, "created", "dataset"))
    created_evals = _keys(_since(fake, mark, "created", "evaluation_job"))
    created_models = _keys(_since(fake, mark, "created", "model"))
    created_configs = _keys(_since(fake, mark, "created", "customization_config"))
    assert created_repos
    assert created_datasets

    jobs.delete(job.id)

    def gone() -> bool:
        return (
            _keys(_since(fake, mark, "deleted", "repo")) >= created_repos
            and _keys(_since(fake, mark, "deleted", "dataset")) >= created_datasets
            and _keys(_since(fake, mark, "deleted", "evaluation_job")) >= created_evals
            and _keys(_since(fake, mark, "deleted", "model")) >= created_models
            and _keys(_since(fake, mark, "deleted", "customization_config")) >= created_configs
            and not (cluster.data_dir / "jobs" / job.id).exists()
        )

    _eventually(gone, f"cleanup of {job.id}", cluster)
    # Uploaded first, deleted after (the ledger is in request order).
    with fake.state.lock:
        ledger = list(fake.state.ledger[mark:])
    for repo in created_repos:
        order = [e.action for e in ledger if e.kind == "repo" and e.key == repo]
        assert order == ["created", "deleted"], (repo, order)
    assert not any(r in fake.state.repos for r in created_repos)


def _assert_only_own_work_stopped(fake: FakeNMPServer, mark: int, foreign: set[str]) -> None:
    """Nothing the job did not create was deleted or cancelled."""
    for kind in (
        "model_deployment",
        "evaluation_job",
        "customization_job",
        "model",
        "customization_config",
        "dataset",
        "repo",
    ):
        created = _keys(_since(fake, mark, "created", kind))
        for action in ("deleted", "cancelled"):
            stray = _keys(_since(fake, mark, action, kind)) - created
            assert not stray, f"{action} {kind} the job did not create: {stray}"
    assert foreign <= set(fake.state.deployments), "a foreign deployment was shut down"


# -- secret scanning ------------------------------------------------------------------------


_B64 = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


def _expand(raw: bytes) -> bytes:
    """``raw`` plus every base64 payload inside it, decoded (Celery bodies on Redis are
    base64 in kombu's JSON envelope), recursively through JSON."""
    out = [raw]
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        value = None
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and len(item) >= 8 and set(item.encode()) <= _B64:
            try:
                decoded = base64.b64decode(item, validate=True)
            except (binascii.Error, ValueError):
                continue
            out.append(_expand(decoded))
    return b"\n".join(out)


def _redis_dump(prefix: str) -> dict[str, bytes]:
    """Every key under ``prefix`` and its whole value, whatever the Redis type."""
    client = redis.Redis.from_url(REDIS_URL)
    dump: dict[str, bytes] = {}
    try:
        for key in client.scan_iter(match=f"{prefix}*", count=500):
            kind = client.type(key).decode()
            parts: list[bytes] = []
            if kind == "string":
                parts = [client.get(key) or b""]
            elif kind == "list":
                parts = list(client.lrange(key, 0, -1))
            elif kind == "hash":
                for field, value in client.hgetall(key).items():
                    parts += [field, value]
            elif kind == "set":
                parts = list(client.smembers(key))
            elif kind == "zset":
                parts = [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
            elif kind == "stream":
                for _, fields in client.xrange(key):
                    for field, value in fields.items():
                        parts += [field, value]
            dump[key.decode()] = b"\n".join(_expand(p) for p in parts)
    finally:
        client.close()
    return dump


def _sqlite_dump(path: Path) -> bytes:
    """Every row of every table, read through SQLite (WAL included)."""
    with sqlite3.connect(path) as conn:
        return "\n".join(conn.iterdump()).encode()


def _assert_no_secret(
    cluster: Cluster, secrets: dict[str, str], job_ids: list[JobId], state: SqliteStateStore
) -> None:
    prefix = cluster.options.queue_prefix
    # Prove the Redis scan reads Celery messages: a canary queued where no worker listens.
    canary = f"canary-{uuid.uuid4().hex}"
    cluster.launcher._app.send_task(  # what the launcher does, to an unconsumed queue
        "flywheel.canary", args=[canary], queue=f"{cluster.options.steps_queue}.canary"
    )
    dump = _redis_dump(prefix)
    assert dump, f"no Redis keys under {prefix!r}"
    assert any(canary.encode() in value for value in dump.values()), "scan misses messages"

    raw_files = {str(p): p.read_bytes() for p in sorted(cluster.data_dir.rglob("*")) if p.is_file()}
    state_db = cluster.data_dir / "state.db"
    stored = _sqlite_dump(state_db)
    documents = [
        json.dumps(state.get_job(job_id).model_dump(mode="json")) for job_id in job_ids
    ] + [
        json.dumps(run.model_dump(mode="json"))
        for job_id in job_ids
        for run in state.list_candidate_runs(job_id)
    ]
    for job_id in job_ids:
        assert job_id.encode() in stored  # the dump does hold the job documents
    for what, secret in secrets.items():
        needle = secret.encode()
        for key, value in dump.items():
            assert needle not in value, f"{what} secret in Redis key {key}"
        assert needle not in stored, f"{what} secret in the state store"
        for path, content in raw_files.items():
            assert needle not in content, f"{what} secret in {path}"
        for doc in documents:
            assert secret not in doc, f"{what} secret in a stored document"


# -- tests ----------------------------------------------------------------------------------


def test_llm_job_runs_on_nmp_and_delete_removes_what_it_made(
    fake: FakeNMPServer,
    cluster: Cluster,
    jobs: JobService,
    state: SqliteStateStore,
    secrets: dict[str, str],
) -> None:
    foreign = {_deploy_foreign(fake, FOREIGN), _deploy_foreign(fake, JUDGE)}
    mark = len(fake.state.ledger)
    job = _submit(state, jobs, _llm_config(fake))
    assert job.config["llm_judge_config"]["api_key_env"] == JUDGE_ENV
    cluster.start_worker()
    done = cluster.wait_done(job.id, timeout_s=DEADLINE_S)

    assert done.status is JobStatus.completed, f"{done.error}\n{cluster.worker_output()}"
    assert done.dataset_stats is not None
    assert done.dataset_stats["workload_type"] == "tool_calling"
    assert done.dataset_stats["splits"]
    assert {d["role"] for d in done.datasets} >= {"eval", "train", "validation", f"icl:{LLM}"}
    assert done.state["datasets"]["handle"]["workload"] == "tool_calling"
    # The candidate documents are projected right after the job's final write.
    _eventually(
        lambda: all(
            e.get("scores") is not None
            for r in state.list_candidate_runs(job.id)
            for e in r.evaluations
        ),
        "scores projected onto every candidate",
        cluster,
    )
    runs = {r.name: r for r in state.list_candidate_runs(job.id)}
    assert set(runs) == {LLM, FOREIGN}
    for name, run in runs.items():
        assert run.status == "completed", (name, run.error)
        assert run.deployment["status"] == "shut_down"
        assert [e["eval_type"] for e in run.evaluations] == ["base", "icl", "customized"]
        for evaluation in run.evaluations:
            assert evaluation["status"] == "completed", evaluation
            assert evaluation["handle"]["job_id"].startswith("eval-")
            scores = evaluation["scores"]
            # Rescored from the per-item generations of the results archive (the fake's
            # candidate answers every row with the reference call), not the Evaluator's 0.8.
            assert scores["function_name_accuracy"]["value"] == 1.0
            assert scores["function_name_accuracy"]["ci_low"] == 1.0
            assert scores["function_name_and_args_accuracy"]["value"] == 1.0
            # Both numbers are on the job, and the difference is flagged.
            assert scores["function_name_accuracy"]["source"] == "flywheel"
            assert scores["function_name_accuracy"]["platform_value"] == 0.8
            assert scores["function_name_accuracy"]["differs"] is True
            # A tool workload is judged for tool-call correctness (0/1 per item), not similarity.
            judged = scores["judge_tool_call_correctness"]
            assert judged["platform_value"] == 1.0
            assert judged["differs"] is False
            assert judged["value"] == 1.0  # the per-item verdicts parsed by our metric code
            assert judged["parse_failures"] == 0
            assert "judge_similarity" not in scores
        custom = run.customization
        assert custom is not None
        assert custom["status"] == "completed"
        output = custom["handle"]["output_model"]
        assert output.startswith(f"{NS}/")
        assert output.endswith(f"@{custom['handle']['job_id']}")
        assert custom["details"]["output_model"] == output
        assert run.evaluations[2]["handle"]["model"] == output  # the adapter was evaluated
    assert runs[LLM].deployment["handle"]["owned"] is True
    assert runs[FOREIGN].deployment["handle"]["owned"] is False

    # The ledger: what the job created on NMP, and that it shut down only its own NIM.
    own = f"{NS}/{LLM.replace('/', '-')}"
    assert _keys(_since(fake, mark, "created", "model_deployment")) == {own}
    assert _keys(_since(fake, mark, "deleted", "model_deployment")) == {own}
    assert len(_since(fake, mark, "created", "customization_job")) == 2
    assert len(_since(fake, mark, "created", "customization_config")) == 2
    assert len(_since(fake, mark, "created", "evaluation_job")) == 6
    assert len(_since(fake, mark, "created", "dataset")) == 2  # train + eval
    deployed = next(b for m, p, b in fake.state.bodies if b.get("name") == own.split("/")[1])
    assert deployed["config"]["nim_deployment"]["image_tag"] == "1.8.3"  # catalogue
    evals = [b for m, p, b in fake.state.bodies if p == "/v1/evaluation/jobs"]
    assert len(evals) == 6
    for body in evals:
        judge = body["config"]["tasks"]["custom-tool-calling"]["metrics"]["correctness"]
        endpoint = judge["params"]["model"]["api_endpoint"]
        assert endpoint["url"] == f"{fake.nim_url}/v1/chat/completions"
        assert endpoint["model_id"] == JUDGE
        assert endpoint["api_key"] == secrets["judge"]  # the key was used, not dropped
    # The NMP token on every NMP call; the judge key only as the judge's own credential
    # (the workflow's judge probe calls the judge URL, which this test points at the fake P).
    assert f"Bearer {secrets['token']}" in fake.state.authorizations
    assert fake.state.authorizations <= {f"Bearer {secrets['token']}", f"Bearer {secrets['judge']}"}

    _assert_delete_cleans_up(fake, jobs, cluster, job, mark)
    _assert_only_own_work_stopped(fake, mark, foreign)
    assert not _since(fake, mark, "cancelled", "evaluation_job")


def test_embedding_job_runs_on_nmp_and_delete_removes_what_it_made(
    fake: FakeNMPServer, cluster: Cluster, jobs: JobService, state: SqliteStateStore
) -> None:
    fake.state.scores.update({"recall_5": 0.42, "recall_10": 0.55, "ndcg_cut_10": 0.37})
    mark = len(fake.state.ledger)
    body = {
        "candidates": [{"name": EMBEDDER, "model_type": "embedding"}],
        "data_split_config": {"eval_size": 10, "min_total_records": 20, "limit": 1000},
        "embedding_config": {"num_hard_negatives": 2, "corpus_sample_size": 0},
        "evaluation_config": {"bootstrap_samples": 100},
    }
    job = _submit(state, jobs, body, job_type=JobType.embedding_job)
    cluster.start_worker()
    done = cluster.wait_done(job.id, timeout_s=DEADLINE_S)

    assert done.status is JobStatus.completed, f"{done.error}\n{cluster.worker_output()}"
    assert done.dataset_stats is not None
    assert done.state["datasets"]["handle"]["beir_files_url"].startswith("hf://datasets/")
    run = state.list_candidate_runs(job.id)[0]
    assert run.status == "completed", run.error
    assert run.deployment["status"] == "shut_down"
    assert [e["eval_type"] for e in run.evaluations] == ["base", "customized"]
    for evaluation in run.evaluations:
        assert evaluation["status"] == "completed"
        scores = evaluation["scores"]
        # Rescored by our metric code from the per-query rankings in the results archive
        # (the fake ranks relevant documents first), with the metrics NMP does not report.
        assert scores["ndcg@10"]["value"] == 1.0
        assert scores["recall@1"]["value"] == 1.0
        assert scores["mrr@10"]["value"] == 1.0
        assert scores["ndcg@10"]["source"] == "flywheel"  # NMP's own value kept beside ours
        assert scores["ndcg@10"]["platform_value"] is not None
        assert "platform_value" not in scores["mrr@10"]  # NMP does not report MRR
    assert run.customization is not None
    assert run.customization["status"] == "completed"
    output = run.customization["handle"]["output_model"]
    assert run.customization["handle"]["finetuning_type"] == "all_weights"
    assert run.evaluations[1]["handle"]["model"] == output.split("@", 1)[0]
    assert done.recommendation is not None
    assert done.recommendation["metric"] == "ndcg@10"

    own = f"{NS}/{EMBEDDER.replace('/', '-')}"
    # The full-weight output was deployed (served as ns/name) for its evaluation, then shut
    # down once the evaluation ended; the base NIM at the end of the candidate.
    served = run.evaluations[1]["handle"]["serving"]
    assert served["owned"] is True
    assert served["model"] == output.split("@", 1)[0]
    serving = f"{served['namespace']}/{served['name']}"
    assert _keys(_since(fake, mark, "created", "model_deployment")) == {own, serving}
    assert _keys(_since(fake, mark, "deleted", "model_deployment")) == {own, serving}
    for key in (own, serving):
        body = next(b for m, p, b in fake.state.bodies if b.get("name") == key.split("/")[1])
        assert body["config"]["nim_deployment"]["disable_lora_support"] is True
    assert (
        next(b for m, p, b in fake.state.bodies if b.get("name") == served["name"])["config"][
            "model"
        ]
        == served["model"]
    )
    assert len(_since(fake, mark, "created", "customization_job")) == 1
    evals = [b for m, p, b in fake.state.bodies if p == "/v1/evaluation/jobs"]
    assert [b["config"]["type"] for b in evals] == ["retriever", "retriever"]
    beir = _keys(_since(fake, mark, "created", "repo"))
    assert any(r.endswith("-beir") for r in beir)

    _assert_delete_cleans_up(fake, jobs, cluster, job, mark)
    _assert_only_own_work_stopped(fake, mark, set())


def _customizing(job: Job) -> bool:
    cand = (job.state.get("candidates") or {}).get(LLM)
    if cand is None:
        return False
    work = cand["work"]
    return all(work[item]["status"] == engine.W_RUNNING for item in ("customize", "base", "icl"))


def test_cancel_during_customization_stops_everything_the_job_started(
    fake: FakeNMPServer,
    cluster: Cluster,
    jobs: JobService,
    state: SqliteStateStore,
) -> None:
    foreign = {_deploy_foreign(fake, JUDGE)}
    fake.state.hold("customization", "running:50.0")
    fake.state.hold("evaluation", "running:50.0")
    mark = len(fake.state.ledger)
    body = _llm_config(fake)
    body["candidates"] = [{"name": LLM}]
    job = _submit(state, jobs, body)
    cluster.start_worker()
    cluster.wait_for(job.id, _customizing, timeout_s=DEADLINE_S)
    customization = _keys(_since(fake, mark, "created", "customization_job"))
    evaluations = _keys(_since(fake, mark, "created", "evaluation_job"))
    assert len(customization) == 1
    assert len(evaluations) == 2  # base and icl; customized waits for the adapter

    jobs.cancel(job.id)
    done = cluster.wait_done(job.id, timeout_s=DEADLINE_S)

    assert done.status is JobStatus.cancelled, f"{done.error}\n{cluster.worker_output()}"
    (cust_id,) = customization
    cancelled = _since(fake, mark, "cancelled", "customization_job")
    assert [(e.key, e.path) for e in cancelled] == [
        (cust_id, f"/v1/customization/jobs/{cust_id}/cancel")
    ]
    assert _keys(_since(fake, mark, "cancelled", "evaluation_job")) == evaluations
    own = f"{NS}/{LLM.replace('/', '-')}"
    assert _keys(_since(fake, mark, "created", "model_deployment")) == {own}
    assert _keys(_since(fake, mark, "deleted", "model_deployment")) == {own}
    assert own not in fake.state.deployments
    stopped = {(s["kind"], s["item"]) for s in done.state["stopped"]}
    assert {("customization", "customize"), ("evaluation", "base"), ("evaluation", "icl")} <= (
        stopped
    )
    assert ("deployment", None) in stopped
    assert any("stopped on cancel" in w for w in done.warnings)
    run = state.list_candidate_runs(job.id)[0]
    assert run.status == "cancelled"

    fake.state.release("customization")
    fake.state.release("evaluation")
    _assert_delete_cleans_up(fake, jobs, cluster, job, mark)
    _assert_only_own_work_stopped(fake, mark, foreign)


def test_no_secret_reaches_redis_or_the_state_store(
    fake: FakeNMPServer,
    cluster: Cluster,
    jobs: JobService,
    state: SqliteStateStore,
    secrets: dict[str, str],
) -> None:
    """The judge key and the NMP token are used (the fake received both) but never stored."""
    llm = _submit(state, jobs, _llm_config(fake))
    cluster.start_worker()
    assert cluster.wait_done(llm.id, timeout_s=DEADLINE_S).status is JobStatus.completed
    # A second job cancelled mid-flight leaves handles and stop records behind, too.
    fake.state.hold("customization", "running:50.0")
    fake.state.hold("evaluation", "running:50.0")
    body = _llm_config(fake)
    body["candidates"] = [{"name": LLM}]
    cancelled = _submit(state, jobs, body)
    cluster.wait_for(cancelled.id, _customizing, timeout_s=DEADLINE_S)
    jobs.cancel(cancelled.id)
    assert cluster.wait_done(cancelled.id, timeout_s=DEADLINE_S).status is JobStatus.cancelled

    sent = json.dumps([b for m, p, b in fake.state.bodies if p == "/v1/evaluation/jobs"])
    assert secrets["judge"] in sent  # it did reach the Evaluator
    assert f"Bearer {secrets['token']}" in fake.state.authorizations
    stored = json.dumps(state.get_job(llm.id).config)
    assert JUDGE_ENV in stored  # the snapshot names the variable, not its value
    _assert_no_secret(cluster, secrets, [llm.id, cancelled.id], state)
