"""LoRA fine-tuning: assistant-only labels, a loss that falls, an adapter that reloads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from flywheel.config.schema import LoRAConfig, TrainingConfig
from flywheel.platforms.local.jobfiles import Cancelled, read_json
from flywheel.platforms.local.lora import IGNORE, encode_example, sha256_files, train_lora
from flywheel.platforms.local.models import ModelSource, load_causal_lm, load_tokenizer
from tests.support.training_data import CALL, sft_rows

# peft 0.21 calls a transformers 5 method that transformers has renamed.
pytestmark = pytest.mark.filterwarnings(
    "ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"
)
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]


def test_labels_cover_only_the_assistant_turns(tiny_chat_model: Path) -> None:
    tokenizer = load_tokenizer(ModelSource(kind="hf", name="tiny", path=str(tiny_chat_model)))
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "assistant", "content": "It is sunny."},
    ]
    encoded = encode_example(tokenizer, messages, TOOLS, max_length=4096)
    labelled = [t for t in encoded.labels if t != IGNORE]
    assert tokenizer.decode(labelled) == (
        '<tool_call>\n{"name":"get_weather","arguments":{"city":"Paris"}}\n</tool_call>'
        "<|im_end|>\nIt is sunny.<|im_end|>\n"
    )
    masked = [
        t for t, label in zip(encoded.input_ids, encoded.labels, strict=True) if label == -100
    ]
    text = tokenizer.decode(masked)
    assert "Paris?" in text
    assert "sunny\n</tool_response>" in text
    assert "<tools>" in text


def test_long_examples_keep_their_tail(tiny_chat_model: Path) -> None:
    tokenizer = load_tokenizer(ModelSource(kind="hf", name="tiny", path=str(tiny_chat_model)))
    messages = sft_rows(TOOLS)[1]["messages"]
    full = encode_example(tokenizer, messages, None, max_length=4096)
    cut = encode_example(tokenizer, messages, None, max_length=10)
    assert cut.input_ids == full.input_ids[-10:]
    assert cut.labels == full.labels[-10:]


def _spec(tmp_path: Path, model: Path, **training: Any) -> dict[str, Any]:
    train = tmp_path / "train.jsonl"
    train.write_bytes(b"\n".join(orjson.dumps(r) for r in sft_rows(TOOLS)))
    return {
        "base": {"kind": "hf", "name": "tiny", "path": str(model)},
        "train_file": str(train),
        "validation_file": str(train),
        "output_dir": str(tmp_path / "adapter"),
        "training": TrainingConfig(**training).model_dump(mode="json"),
        "lora": LoRAConfig(adapter_dim=8, alpha=16, adapter_dropout=0.0).model_dump(mode="json"),
        "max_seq_length": 256,
        "torch_threads": 1,
    }


def test_training_lowers_the_loss_and_the_adapter_reloads_identically(
    tmp_path: Path, tiny_chat_model: Path
) -> None:
    import torch

    spec = _spec(tmp_path, tiny_chat_model, epochs=6, batch_size=2, learning_rate=0.01)
    reports: list[dict[str, Any]] = []
    result = train_lora(spec, report=reports.append)

    losses = result.metrics["train_loss"]
    assert len(losses) == 12
    assert sum(losses[-2:]) < sum(losses[:2])
    assert len(result.metrics["val_loss"]) == 6
    assert result.metrics["val_loss"][-1] < result.metrics["val_loss"][0]
    assert [r["step"] for r in reports if "val_loss" not in r] == list(range(1, 13))
    assert all(r["epoch"] >= 1 and "loss" in r for r in reports)

    manifest = read_json(result.output_dir / "manifest.json")
    assert manifest["base_model"]["path"] == str(tiny_chat_model)
    assert manifest["lora"]["adapter_dim"] == 8
    assert manifest["files"] == sha256_files(result.output_dir)
    assert "adapter_model.safetensors" in manifest["files"]

    reloaded = load_causal_lm(
        ModelSource.from_dict(spec["base"]), device="cpu", adapter_dir=str(result.output_dir)
    )
    inputs = result.tokenizer("What is the weather in Paris?", return_tensors="pt")
    with torch.no_grad():
        trained_logits = result.model(**inputs).logits
        reloaded_logits = reloaded(**inputs).logits
        base = load_causal_lm(ModelSource.from_dict(spec["base"]), device="cpu")
        base_logits = base(**inputs).logits
    assert torch.equal(trained_logits, reloaded_logits)
    assert not torch.allclose(trained_logits, base_logits)


def test_max_steps_and_cancellation(tmp_path: Path, tiny_chat_model: Path) -> None:
    spec = _spec(tmp_path, tiny_chat_model, epochs=5, batch_size=1, max_steps=3)
    result = train_lora(spec)
    assert result.metrics["steps"] == 3

    steps: list[int] = []
    with pytest.raises(Cancelled):
        train_lora(
            {**spec, "output_dir": str(tmp_path / "cancelled")},
            report=lambda d: steps.append(d["step"]),
            should_stop=lambda: len(steps) >= 2,
        )
    assert steps == [1, 2]
    assert not (tmp_path / "cancelled").exists()
