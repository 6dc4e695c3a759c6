"""Embedding models with sentence-transformers: fine-tune with hard negatives.

**Training** reads lines ``{"query", "pos_doc", "neg_doc": [...]}`` and minimises the
multiple-negatives ranking loss: each query's positive must outscore, by cosine similarity
divided by ``embedding_config.temperature``, every other passage in the batch, which is the
other queries' positives (in-batch negatives) and all hard negatives of the batch. Rows may
carry different numbers of hard negatives. This is sentence-transformers'
``MultipleNegativesRankingLoss`` with ``scale = 1 / temperature``. The loop is plain torch so
progress (with the validation loss after each epoch) and cancellation work between steps,
as for LoRA.

**Evaluation** (ranking the BEIR eval set) lives in :mod:`flywheel.platforms.local.ranking`.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from flywheel.config.schema import JobConfig
from flywheel.errors import PlatformError
from flywheel.platforms.base import Handle
from flywheel.platforms.local.jobfiles import Cancelled, WorkDir, read_jsonl, write_json_atomic
from flywheel.platforms.local.lora import sha256_files
from flywheel.platforms.local.models import ModelSource


def embedding_customization_spec(
    *, source: ModelSource, datasets: Handle, config: JobConfig, output_dir: Path
) -> dict[str, Any]:
    """The worker spec for fine-tuning an embedding model."""
    if not datasets.get("train"):
        raise PlatformError("local platform: the embedding job has no training file")
    emb = config.embedding_config
    return {
        "kind": "embedding_customization",
        "base": source.to_dict(),
        "train_file": datasets["train"],
        "validation_file": datasets.get("validation"),
        "output_dir": str(output_dir),
        "epochs": emb.epochs,
        "batch_size": emb.batch_size,
        "learning_rate": emb.learning_rate,
        "max_seq_length": emb.max_seq_length,
        "temperature": emb.temperature,
        "seed": config.data_split_config.random_seed or 42,
    }


#: The training settings a manifest records: enough to reproduce the run.
_MANIFEST_CONFIG = (
    "epochs",
    "batch_size",
    "learning_rate",
    "temperature",
    "max_seq_length",
    "seed",
)


def load_sentence_model(source: ModelSource, *, max_seq_length: int) -> Any:
    """A SentenceTransformer on the best device, with its sequence limit set."""
    from sentence_transformers import SentenceTransformer

    from flywheel.platforms.local.models import choose_device

    model = SentenceTransformer(source.path, device=choose_device())
    model.max_seq_length = min(max_seq_length, model.max_seq_length or max_seq_length)
    return model


def _mnrl_loss(model: Any, rows: list[dict[str, Any]], temperature: float) -> Any:
    import torch
    import torch.nn.functional as F  # noqa: N812 - the conventional alias

    def embed(texts: list[str]) -> Any:
        prepare = getattr(model, "preprocess", None) or model.tokenize
        features = {
            k: v.to(model.device) if isinstance(v, torch.Tensor) else v
            for k, v in prepare(texts).items()
        }
        return F.normalize(model(features)["sentence_embedding"], dim=-1)

    queries = embed([str(r["query"]) for r in rows])
    passages = [str(r["pos_doc"]) for r in rows]
    passages += [str(n) for r in rows for n in r.get("neg_doc") or []]
    scores = queries @ embed(passages).T / temperature
    return F.cross_entropy(scores, torch.arange(len(rows), device=scores.device))


def _validation_loss(
    model: Any, rows: list[dict[str, Any]], *, batch_size: int, temperature: float
) -> float:
    """Mean loss over validation batches, without dropout or gradients."""
    import torch

    model.eval()
    with torch.no_grad():
        values = [
            float(_mnrl_loss(model, rows[i : i + batch_size], temperature))
            for i in range(0, len(rows), batch_size)
        ]
    model.train()
    return sum(values) / len(values)


def train_embeddings(
    spec: Mapping[str, Any],
    *,
    report: Callable[[dict[str, Any]], None] = lambda details: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> dict[str, Any]:
    """Fine-tune and save the model; its metrics. Raises :class:`Cancelled` when asked."""
    import torch

    from flywheel.platforms.local.models import set_threads

    set_threads(int(spec.get("torch_threads", 0)))
    seed = int(spec.get("seed", 42))
    torch.manual_seed(seed)
    model = load_sentence_model(
        ModelSource.from_dict(spec["base"]), max_seq_length=int(spec["max_seq_length"])
    )
    rows = read_jsonl(Path(spec["train_file"]))
    validation = read_jsonl(Path(spec["validation_file"])) if spec.get("validation_file") else []
    batch_size, epochs = int(spec["batch_size"]), int(spec["epochs"])
    temperature = float(spec["temperature"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=float(spec["learning_rate"]))
    rng = random.Random(seed)
    total_steps = epochs * math.ceil(len(rows) / batch_size)
    losses: list[float] = []
    val_losses: list[float] = []
    step, started = 0, time.perf_counter()
    model.train()
    for epoch in range(1, epochs + 1):
        rng.shuffle(rows)
        for start in range(0, len(rows), batch_size):
            if should_stop():
                raise Cancelled
            loss = _mnrl_loss(model, rows[start : start + batch_size], temperature)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            step += 1
            losses.append(float(loss.detach()))
            report({"step": step, "total_steps": total_steps, "epoch": epoch, "loss": losses[-1]})
        if validation:
            # One pass over a small file per epoch: cheap next to training, and the curve
            # is what tells over-fitting apart from learning.
            val_losses.append(
                _validation_loss(model, validation, batch_size=batch_size, temperature=temperature)
            )
            report(
                {
                    "step": step,
                    "total_steps": total_steps,
                    "epoch": epoch,
                    "loss": losses[-1] if losses else None,
                    "val_loss": val_losses[-1],
                }
            )
    output_dir = Path(spec["output_dir"])
    model.save(str(output_dir))
    metrics = {
        "steps": step,
        "train_loss": losses,
        "val_loss": val_losses,
        "final_loss": losses[-1] if losses else None,
        "train_seconds": round(time.perf_counter() - started, 3),
        "train_examples": len(rows),
    }
    write_json_atomic(
        output_dir / "manifest.json",
        {
            "base_model": dict(spec["base"]),
            "config": {k: spec.get(k) for k in _MANIFEST_CONFIG},
            "metrics": metrics,
            "files": sha256_files(output_dir),
        },
    )
    return metrics


def run_embedding_customization(work: WorkDir, spec: Mapping[str, Any]) -> None:
    """Worker entry: fine-tune an embedding model."""
    work.report("running", percent=0.0, message="loading model")

    def report(details: dict[str, Any]) -> None:
        percent = round(100 * details["step"] / max(details["total_steps"], 1), 1)
        work.report("running", percent=percent, message="training", details=details)

    metrics = train_embeddings(spec, report=report, should_stop=work.cancel_requested)
    write_json_atomic(work.result, {"output_model": spec["output_dir"], "metrics": metrics})
    work.report("completed", percent=100.0, message="model saved", details=metrics)
