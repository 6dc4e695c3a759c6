"""Shared helpers of the workflow tests: synthetic logs, job configs, an in-process driver."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from flywheel.config.schema import (
    CandidateModel,
    DataSplitConfig,
    EmbeddingJobConfig,
    EvaluationConfig,
    JobConfig,
    StageTimeouts,
)
from flywheel.domain.jobs import TERMINAL_STATUSES, CandidateRun, Job, JobId, JobType
from flywheel.domain.logs import ChatLog, RetrievalLog, RetrievedPassage
from flywheel.settings import Settings
from flywheel.stores.base import LogStore, StateStore
from flywheel.workflow.capacity import SqliteCapacity
from flywheel.workflow.datasets import LogStoreDatasetBuilder
from flywheel.workflow.options import WorkflowOptions
from flywheel.workflow.steps import StepRunner, WorkflowServices
from tests.workflow.fake_platform import FakePlatform

CLIENT, WORKLOAD, RAG = "acme", "router", "rag"
TOOLS = ["get_weather", "get_time", "book_table", "send_email"]


def chat_logs(n: int = 40) -> list[ChatLog]:
    """``n`` distinct tool-calling records over four tools."""
    tools = [
        {"type": "function", "function": {"name": t, "parameters": {"type": "object"}}}
        for t in TOOLS
    ]
    logs = []
    for i in range(n):
        tool = TOOLS[i % len(TOOLS)]
        logs.append(
            ChatLog(
                client_id=CLIENT,
                workload_id=WORKLOAD,
                timestamp=1_700_000_000_000 + i * 1000,
                request={
                    "model": "big-model",
                    "messages": [
                        {
                            "role": "user",
                            "content": f"request number {i}: please {tool} for {i * 7}",
                        }
                    ],
                    "tools": tools,
                },
                response={
                    "choices": [
                        {
                            "message": {
                                "role": "assistant",
                                "content": None,
                                "tool_calls": [
                                    {
                                        "id": f"call_{i}",
                                        "type": "function",
                                        "function": {
                                            "name": tool,
                                            "arguments": f'{{"arg": {i}}}',
                                        },
                                    }
                                ],
                            },
                            "finish_reason": "tool_calls",
                        }
                    ],
                    "usage": {"prompt_tokens": 120, "completion_tokens": 25},
                },
            )
        )
    return logs


def retrieval_logs(n: int = 40) -> list[RetrievalLog]:
    """``n`` retrieval records, each with one used passage among distractors."""
    logs = []
    for i in range(n):
        docs = [f"kb-{(i * 7 + k) % 97}" for k in range(6)]
        docs.insert(2, f"answer-{i}")
        logs.append(
            RetrievalLog(
                client_id=CLIENT,
                workload_id=RAG,
                timestamp=1_700_000_000_000 + i,
                query=f"How is setting {i} changed?",
                retrieved=[
                    RetrievedPassage(
                        doc_id=d,
                        text=f"{d}: documentation paragraph number {d[3:]} of the manual",
                        rank=r,
                    )
                    for r, d in enumerate(docs)
                ],
                used_doc_ids=[f"answer-{i}"],
            )
        )
    return logs


def llm_config(
    names: list[str], *, gpus: int = 1, customize: bool = True, **extra: Any
) -> JobConfig:
    """A small llm_job configuration over ``names``."""
    return JobConfig(
        candidates=[
            CandidateModel(name=n, gpus=gpus, customization_enabled=customize) for n in names
        ],
        data_split_config=DataSplitConfig(eval_size=8, min_total_records=20, limit=1000),
        evaluation_config=EvaluationConfig(bootstrap_samples=100),
        **extra,
    )


def embedding_config(names: list[str]) -> JobConfig:
    """A small embedding_job configuration."""
    return JobConfig(
        candidates=[CandidateModel(name=n, model_type="embedding", gpus=1) for n in names],
        data_split_config=DataSplitConfig(eval_size=10, min_total_records=20, limit=1000),
        embedding_config=EmbeddingJobConfig(num_hard_negatives=2, corpus_sample_size=0),
        evaluation_config=EvaluationConfig(bootstrap_samples=100),
    )


def create_job(
    state: StateStore,
    config: JobConfig,
    *,
    job_type: JobType = JobType.llm_job,
    timeouts: StageTimeouts | None = None,
) -> Job:
    """Store a pending job (what JobService.create does) and its candidate runs."""
    if timeouts is not None:
        config = config.model_copy(update={"timeouts": timeouts})
    job = state.create_job(
        Job(
            id=JobId(f"job_{uuid.uuid4().hex}"),
            client_id=CLIENT,
            workload_id=RAG if job_type is JobType.embedding_job else WORKLOAD,
            job_type=job_type,
            config=config.model_dump(mode="json"),
        )
    )
    for c in config.candidates_for(job_type):
        state.put_candidate_run(CandidateRun(job_id=job.id, name=c.name, model_type=c.model_type))
    return job


def fast_options(**overrides: Any) -> WorkflowOptions:
    """Options with millisecond timings."""
    values: dict[str, Any] = {
        "poll_interval_s": 0.05,
        "capacity_retry_s": 0.05,
        "claim_lease_s": 2.0,
        "build_lease_s": 30.0,
        "stale_after_s": 1.0,
        "sweep_interval_s": 0.5,
        "stuck_grace_s": 5.0,
        "retry_backoff_s": 0.05,
        "max_transient_retries": 3,
        **overrides,
    }
    return WorkflowOptions(**values)


def make_services(
    *,
    state: StateStore,
    logs: LogStore,
    platform: FakePlatform,
    data_dir: Path,
    gpu_budget: int = 4,
    options: WorkflowOptions | None = None,
) -> WorkflowServices:
    """Services over real SQLite stores and the fake platform."""
    return WorkflowServices(
        state=state,
        logs=logs,
        platform=platform,
        capacity=SqliteCapacity(data_dir / "workflow.db"),
        datasets=LogStoreDatasetBuilder(logs),
        options=options or fast_options(),
        gpu_budget=gpu_budget,
        data_dir=data_dir,
    )


def drive(runner: StepRunner, job_id: JobId, *, timeout_s: float = 30.0) -> Job:
    """Run a job's steps in this process until it ends (no Celery), bounded in time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        step = runner.advance(job_id)
        job = runner.s.state.get_job(job_id)
        if job.status in TERMINAL_STATUSES:
            return job
        if step.wait_s:
            time.sleep(min(step.wait_s, 0.2))
    raise AssertionError(f"job {job_id} did not finish within {timeout_s} s: {job.status}")


def test_settings(data_dir: Path, **values: Any) -> Settings:
    """Settings for a temporary data dir."""
    return Settings(data_dir=data_dir, **values)
