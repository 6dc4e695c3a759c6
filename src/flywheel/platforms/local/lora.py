"""LoRA supervised fine-tuning with PEFT, in a plain torch loop.

Each training line ``{"messages": [...], "tools": [...]}`` is rendered with the model's chat
template (tools by the template or by :mod:`tool_prompt`). The loss covers the **assistant
turns only**: an assistant turn's characters are the text the template adds between the
conversation up to it (with the generation prompt) and the conversation including it, and
a token is labelled when it starts inside such a span. Long examples keep their tail, where
the final assistant turn is.

A plain loop (rather than ``transformers.Trainer``) keeps progress, cancellation between
steps and tokens/s in our hands. The adapter is saved with a ``manifest.json``: base model,
configuration, metrics and the SHA-256 of every adapter file.

Spec keys: ``base`` (source dict), ``train_file``, ``validation_file`` (optional),
``output_dir``, ``training`` and ``lora`` (the job's TrainingConfig / LoRAConfig dicts),
``max_seq_length``, ``torch_threads``, ``seed``.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from flywheel.platforms.local.jobfiles import Cancelled, WorkDir, write_json_atomic
from flywheel.platforms.local.models import ModelSource, render_chat

IGNORE = -100


@dataclass
class Encoded:
    """One tokenized example; ``labels`` is ``-100`` outside assistant turns."""

    input_ids: list[int]
    labels: list[int]


@dataclass
class TrainResult:
    """What a finished run produced (the model stays loaded for callers that want it)."""

    model: Any
    tokenizer: Any
    output_dir: Path
    metrics: dict[str, Any] = field(default_factory=dict)


def _assistant_spans(
    tokenizer: Any, messages: Sequence[Mapping[str, Any]], tools: Any, full: str
) -> list[tuple[int, int]]:
    spans = []
    for i, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        before = render_chat(tokenizer, messages[:i], tools, add_generation_prompt=True)
        upto = render_chat(tokenizer, messages[: i + 1], tools, add_generation_prompt=False)
        if upto.startswith(before) and full.startswith(upto):
            spans.append((len(before), len(upto)))
    if not spans and messages and messages[-1].get("role") == "assistant":
        # Templates that re-render history differently: train the final turn only.
        before = render_chat(tokenizer, messages[:-1], tools, add_generation_prompt=True)
        if full.startswith(before):
            spans.append((len(before), len(full)))
    return spans


def encode_example(
    tokenizer: Any,
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None,
    *,
    max_length: int,
) -> Encoded:
    """Tokenize a conversation and label its assistant tokens."""
    full = render_chat(tokenizer, messages, tools, add_generation_prompt=False)
    spans = _assistant_spans(tokenizer, messages, tools, full)
    encoded = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = list(encoded["input_ids"])
    labels = [
        token if any(s <= start < e for s, e in spans) else IGNORE
        for token, (start, _end) in zip(ids, encoded["offset_mapping"], strict=True)
    ]
    return Encoded(input_ids=ids[-max_length:], labels=labels[-max_length:])


def read_sft_file(path: Path) -> list[dict[str, Any]]:
    """SFT lines: ``{"messages": [...], "tools": [...]}``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [orjson.loads(line) for line in lines if line.strip()]


def _batch(examples: Sequence[Encoded], pad_id: int, device: str) -> dict[str, Any]:
    import torch

    width = max(len(e.input_ids) for e in examples)
    ids = [e.input_ids + [pad_id] * (width - len(e.input_ids)) for e in examples]
    labels = [e.labels + [IGNORE] * (width - len(e.labels)) for e in examples]
    mask = [[1] * len(e.input_ids) + [0] * (width - len(e.input_ids)) for e in examples]
    return {
        "input_ids": torch.tensor(ids, device=device),
        "labels": torch.tensor(labels, device=device),
        "attention_mask": torch.tensor(mask, device=device),
    }


def _validation_loss(model: Any, examples: Sequence[Encoded], *, pad_id: int, device: str) -> float:
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for example in examples:
            batch = _batch([example], pad_id, device)
            n = sum(1 for label in example.labels[1:] if label != IGNORE)
            if n:
                total += float(model(**batch).loss) * n
                count += n
    model.train()
    return total / count if count else math.nan


def sha256_files(directory: Path) -> dict[str, str]:
    """SHA-256 of every file under ``directory`` (relative path → hex digest)."""
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }


def train_lora(
    spec: Mapping[str, Any],
    *,
    report: Callable[[dict[str, Any]], None] = lambda details: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> TrainResult:
    """Train and save a LoRA adapter; raise :class:`Cancelled` if asked to stop."""
    import torch
    from peft import LoraConfig, get_peft_model

    from flywheel.platforms.local.models import (
        choose_device,
        load_causal_lm,
        load_tokenizer,
        set_threads,
    )

    training, lora = spec["training"], spec["lora"]
    seed = int(spec.get("seed", 42))
    set_threads(int(spec.get("torch_threads", 0)))
    torch.manual_seed(seed)
    device = choose_device()
    source = ModelSource.from_dict(spec["base"])
    tokenizer = load_tokenizer(source)
    model = load_causal_lm(source, device=device)
    model = get_peft_model(
        model,
        LoraConfig(
            r=int(lora["adapter_dim"]),
            lora_alpha=int(lora["alpha"]),
            lora_dropout=float(lora["adapter_dropout"]),
            target_modules=list(lora["target_modules"]),
            task_type="CAUSAL_LM",
        ),
    )
    model.train()
    max_length = int(spec.get("max_seq_length", training.get("max_seq_length", 2048)))

    def encode_file(path: str | None) -> list[Encoded]:
        if not path:
            return []
        rows = read_sft_file(Path(path))
        encoded = [
            encode_example(tokenizer, r["messages"], r.get("tools"), max_length=max_length)
            for r in rows
        ]
        return [e for e in encoded if any(label != IGNORE for label in e.labels[1:])]

    train, validation = encode_file(spec["train_file"]), encode_file(spec.get("validation_file"))
    if not train:
        raise ValueError("no training example has an assistant turn to learn from")
    batch_size, epochs = int(training["batch_size"]), int(training["epochs"])
    steps_per_epoch = math.ceil(len(train) / batch_size)
    total_steps = epochs * steps_per_epoch
    if training.get("max_steps"):
        total_steps = min(total_steps, int(training["max_steps"]))
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=float(training["learning_rate"])
    )
    pad_id = int(tokenizer.pad_token_id)
    rng = random.Random(seed)
    losses: list[float] = []
    val_losses: list[float] = []
    step, tokens, started = 0, 0, time.perf_counter()
    for epoch in range(1, epochs + 1):
        order = list(range(len(train)))
        rng.shuffle(order)
        for start in range(0, len(order), batch_size):
            if step >= total_steps:
                break
            if should_stop():
                raise Cancelled
            batch = _batch([train[i] for i in order[start : start + batch_size]], pad_id, device)
            loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            step += 1
            tokens += int(batch["attention_mask"].sum())
            losses.append(float(loss.detach()))
            elapsed = time.perf_counter() - started
            report(
                {
                    "step": step,
                    "total_steps": total_steps,
                    "epoch": epoch,
                    "loss": losses[-1],
                    "tokens_per_second": round(tokens / elapsed, 1) if elapsed else None,
                }
            )
        if validation:
            val_losses.append(_validation_loss(model, validation, pad_id=pad_id, device=device))
            report(
                {
                    "step": step,
                    "total_steps": total_steps,
                    "epoch": epoch,
                    "loss": losses[-1],
                    "val_loss": val_losses[-1],
                }
            )
        if step >= total_steps:
            break
    duration = time.perf_counter() - started
    output_dir = Path(spec["output_dir"])
    model.save_pretrained(str(output_dir))
    metrics = {
        "steps": step,
        "epochs_completed": epoch,
        "train_loss": losses,
        "val_loss": val_losses,
        "final_loss": losses[-1],
        "train_seconds": round(duration, 3),
        "tokens_per_second": round(tokens / duration, 1) if duration else None,
        "train_examples": len(train),
        "validation_examples": len(validation),
        "device": device,
    }
    manifest = {
        "base_model": source.to_dict(),
        "training": dict(training),
        "lora": dict(lora),
        "max_seq_length": max_length,
        "metrics": metrics,
        "files": sha256_files(output_dir),
    }
    write_json_atomic(output_dir / "manifest.json", manifest)
    model.eval()
    return TrainResult(model=model, tokenizer=tokenizer, output_dir=output_dir, metrics=metrics)


def run_customization(work: WorkDir, spec: Mapping[str, Any]) -> None:
    """The worker-process entry for LoRA customization."""
    work.report("running", percent=0.0, message="loading model")

    def report(details: dict[str, Any]) -> None:
        total = details.get("total_steps") or 0
        percent = round(100 * details["step"] / total, 1) if total else None
        work.report("running", percent=percent, message="training", details=details)

    result = train_lora(spec, report=report, should_stop=work.cancel_requested)
    write_json_atomic(
        work.result, {"output_model": str(result.output_dir), "metrics": result.metrics}
    )
    work.report(
        "completed",
        percent=100.0,
        message="adapter saved",
        details={**result.metrics, "output_model": str(result.output_dir)},
    )
