"""Fixtures of the end-to-end tests: tiny random models and a job configuration using them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.support.tiny_models import build_tiny_chat_model, build_tiny_sentence_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(chat model dir, sentence-transformers model dir), built once per session."""
    root = tmp_path_factory.mktemp("tiny-models")
    return build_tiny_chat_model(root / "chat"), build_tiny_sentence_model(root / "embed")


def tiny_job_config(chat_model: Path, sentence_model: Path) -> dict[str, Any]:
    """A partial job configuration that runs a whole job on tiny models in seconds."""
    return {
        "candidates": [
            {
                "name": "tiny-llama",
                "model_type": "llm",
                "context_length": 1024,
                "gpus": 0,
                "hf_model": str(chat_model),
                "pricing": {"input_per_million_tokens": 0.02, "output_per_million_tokens": 0.02},
            },
            {
                "name": "tiny-bert",
                "model_type": "embedding",
                "context_length": 64,
                "gpus": 0,
                "hf_model": str(sentence_model),
                "pricing": {"input_per_million_tokens": 0.01, "output_per_million_tokens": 0.0},
            },
        ],
        "data_split_config": {"eval_size": 8, "val_ratio": 0.1, "min_total_records": 20},
        "icl_config": {"max_context_length": 1024, "reserved_tokens": 128, "max_examples": 1},
        "training_config": {
            "epochs": 1,
            "batch_size": 2,
            "learning_rate": 0.01,
            "max_steps": 3,
            "max_seq_length": 128,
        },
        "lora_config": {"adapter_dim": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]},
        "embedding_config": {
            "num_hard_negatives": 2,
            "corpus_sample_size": 50,
            "epochs": 1,
            "batch_size": 4,
            "max_seq_length": 64,
        },
        "evaluation_config": {"bootstrap_samples": 200, "max_new_tokens": 12},
    }


FAST_WORKFLOW_ENV = {
    "FLYWHEEL_WORKFLOW_POLL_INTERVAL_S": "0.25",
    "FLYWHEEL_WORKFLOW_CAPACITY_RETRY_S": "0.25",
    "FLYWHEEL_WORKFLOW_SWEEP_INTERVAL_S": "5",
    "FLYWHEEL_WORKFLOW_RETRY_BACKOFF_S": "0.2",
}
"""Workflow timings that keep a tiny job's idle waits short."""


def worker_env(data_dir: Path, config_path: Path, **extra: str) -> dict[str, str]:
    """Environment of a worker on the embedded broker of ``data_dir``, one torch thread."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FLYWHEEL_", "REDIS_URL", "MONGODB_", "ELASTICSEARCH_", "NMP_"))
    }
    env.update(
        {
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
            "FLYWHEEL_DATA_DIR": str(data_dir),
            "FLYWHEEL_CONFIG": str(config_path),
            "FLYWHEEL_TORCH_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "FLYWHEEL_LOG_FORMAT": "console",
            "FLYWHEEL_LOG_LEVEL": "WARNING",
            **FAST_WORKFLOW_ENV,
            **extra,
        }
    )
    return env
