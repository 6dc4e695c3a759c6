"""GPU check of the local platform (issue 7): does the code that claims to use a GPU use it?

Run from the repository root:  ``python3 -m benchmarks.gpu_check --out DIR [--require-cuda]``

The local platform picks ``cuda`` whenever torch sees a GPU (``models.choose_device``), but
its tests only ever run on CPU. This script drives the same functions the worker processes
call, with the tiny random models of :mod:`tests.support.tiny_models` (built in code, no
downloads), on whatever device ``choose_device`` picks:

1. ``load``: :func:`~flywheel.platforms.local.models.load_causal_lm` puts a tiny Llama on
   the chosen device (``cuda`` whenever torch sees one), in bfloat16/float16 on a GPU;
2. ``generate``: :class:`~flywheel.platforms.local.generation.LocalGenerator` answers a
   batch of chats; every answer must be a well-formed assistant message. Whether the batched
   answers equal one-at-a-time answers (true on CPU, where the unit test asserts it) is
   recorded, not enforced: half precision on a GPU may legitimately break the tie;
3. ``lora``: :func:`~flywheel.platforms.local.lora.train_lora` trains on tool-calling
   chats; the loss must fall, the adapter must reload on the device and give the very same
   greedy answers as the trained model in memory, and it must change the base model's logits;
4. ``embeddings``: :func:`~flywheel.platforms.local.embeddings.train_embeddings` fine-tunes
   the tiny sentence-transformers BERT; the validation loss must fall and the saved model
   must load back onto the device.

A table (step, device, seconds, result, peak GPU memory from
``torch.cuda.max_memory_allocated``) is printed and ``DIR/gpu_check.json`` holds it all, with
the library versions. Exit status 1 when any check fails (and, with ``--require-cuda``, when
torch sees no GPU). Measured 2026-11-27 on the 2 shared x86 cores of the dev machine (no
GPU): 13 s with ``--threads 1``, 46 s with torch's default threads while other jobs ran.

On the GPU machine (no network; pydantic, orjson and their needs travel as wheels in
``.whl``, see /work/.library/device/README.md), from the repository root::

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:src || exit
    python3 -m benchmarks.gpu_check --out "$OUT" --require-cuda
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the GPU machine has no network: never wait on it
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # keep the device's output tail readable

# Imported after the switches above, which huggingface_hub and transformers read on import.
import orjson
from tests.support.training_data import CALL, EMBEDDING_TRAINING, embedding_rows, sft_rows

from flywheel.platforms.local.generation import Chat, Generated, LocalGenerator
from flywheel.platforms.local.models import (
    ModelSource,
    choose_device,
    load_causal_lm,
    load_tokenizer,
    set_threads,
)

MAX_NEW_TOKENS = 16
#: 30 steps: the random tiny Llama learns slowly (its loss starts near ln(vocab)), and with
#: fewer steps or a higher rate the fall is lost in noise (measured on CPU in fp32 and bf16).
LORA_TRAINING: dict[str, Any] = {"epochs": 15, "batch_size": 2, "learning_rate": 0.01}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
CHATS: list[Chat] = [
    ([{"role": "user", "content": "Paris?"}], None),
    ([{"role": "user", "content": "What is the weather in Paris today?"}], TOOLS),
    (
        [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Book a table for two at eight."},
        ],
        None,
    ),
    ([{"role": "user", "content": "Cancel my order 1234 please."}], TOOLS),
    (
        [
            {"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [CALL]},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        ],
        TOOLS,
    ),
    ([{"role": "user", "content": "The weather in Paris is sunny with a light breeze."}], None),
]
SFT_ROWS = sft_rows(TOOLS)
EMBEDDING_ROWS = embedding_rows()


class CheckFailed(Exception):
    """A check's condition did not hold (not ``assert``: ``python -O`` would drop those)."""


def check(condition: bool, message: str) -> None:
    """Raise :class:`CheckFailed` with ``message`` unless ``condition``."""
    if not condition:
        raise CheckFailed(message)


@dataclass
class Context:
    """What the steps share: the work directory, the device and what earlier steps made."""

    work: Path
    threads: int
    require_cuda: bool
    device: str = "cpu"
    chat_dir: Path | None = None
    sentence_dir: Path | None = None
    tokenizer: Any = None
    model: Any = None


@dataclass
class StepResult:
    """One row of the table and of the JSON summary."""

    step: str
    device: str
    seconds: float
    ok: bool
    result: str
    peak_gpu_mib: float | None
    details: dict[str, Any] = field(default_factory=dict)


Step = Callable[[Context], tuple[str, dict[str, Any]]]


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n")
    return path


def _param_device(model: Any) -> str:
    return str(next(model.parameters()).device.type)


def _source(ctx: Context) -> ModelSource:
    check(ctx.chat_dir is not None, "needs the tiny chat model of the 'build' step, which failed")
    return ModelSource(kind="hf", name="tiny", path=str(ctx.chat_dir))


# -- steps ----------------------------------------------------------------------------------


def step_environment(ctx: Context) -> tuple[str, dict[str, Any]]:
    """Versions and the device; fails without a GPU only when ``--require-cuda`` asks for one."""
    import peft
    import sentence_transformers
    import torch
    import transformers

    set_threads(ctx.threads)
    ctx.device = choose_device()
    cuda = torch.cuda.is_available()
    details: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "cuda_available": cuda,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "bf16": torch.cuda.is_bf16_supported() if cuda else None,
    }
    check(not ctx.require_cuda or cuda, "--require-cuda: torch sees no GPU (is this a GPU torch?)")
    check(ctx.device == ("cuda" if cuda else "cpu"), f"choose_device() gave {ctx.device!r}")
    return f"torch {torch.__version__}, {details['gpu'] or 'no GPU'}", details


def step_build(ctx: Context) -> tuple[str, dict[str, Any]]:
    """The tiny random models, saved as Hugging Face / sentence-transformers directories."""
    from tests.support.tiny_models import build_tiny_chat_model, build_tiny_sentence_model

    ctx.chat_dir = build_tiny_chat_model(ctx.work / "tiny-chat")
    ctx.sentence_dir = build_tiny_sentence_model(ctx.work / "tiny-st")
    return "tiny Llama and BERT saved", {}


def step_load(ctx: Context) -> tuple[str, dict[str, Any]]:
    """The chat model through ``load_tokenizer`` / ``load_causal_lm``, as the workers load it."""
    import torch

    source = _source(ctx)
    ctx.tokenizer = load_tokenizer(source)
    ctx.model = load_causal_lm(source, device=ctx.device)
    placed, dtype = _param_device(ctx.model), next(ctx.model.parameters()).dtype
    check(placed == ctx.device, f"weights are on {placed}, not on {ctx.device}")
    if ctx.device == "cuda":
        check(dtype in {torch.bfloat16, torch.float16}, f"weights are {dtype} on the GPU")
    return f"on {placed}, {dtype}", {"dtype": str(dtype)}


def _answer(model: Any, ctx: Context, *, batch_size: int) -> list[Generated]:
    generator = LocalGenerator(
        tokenizer=ctx.tokenizer, model=model, device=ctx.device, batch_size=batch_size
    )
    answers = generator.generate(CHATS, max_new_tokens=MAX_NEW_TOKENS)
    check(answers is not None, "generate() returned None though nothing asked it to stop")
    assert answers is not None  # for mypy: check() above raised otherwise
    return answers


def _check_well_formed(answer: Generated, index: int) -> None:
    message = answer.message
    check(message.get("role") == "assistant", f"answer {index}: role {message.get('role')!r}")
    calls = message.get("tool_calls") or []
    check(isinstance(message.get("content"), str) or bool(calls), f"answer {index}: no content")
    for call in calls:
        function = call.get("function", {})
        check(isinstance(function.get("name"), str), f"answer {index}: tool call without name")
        check(isinstance(function.get("arguments"), str), f"answer {index}: arguments not text")
    check(
        1 <= answer.output_tokens <= MAX_NEW_TOKENS,
        f"answer {index}: {answer.output_tokens} tokens",
    )
    check(answer.input_tokens > 0 and answer.latency_ms > 0, f"answer {index}: no input or time")


def step_generate(ctx: Context) -> tuple[str, dict[str, Any]]:
    """A batch of chats through ``LocalGenerator``; the batched-vs-single comparison is noted."""
    check(ctx.model is not None, "needs the model of the 'load' step, which failed")
    batched = _answer(ctx.model, ctx, batch_size=4)
    check(len(batched) == len(CHATS), f"{len(batched)} answers for {len(CHATS)} chats")
    for index, answer in enumerate(batched):
        _check_well_formed(answer, index)
    single = _answer(ctx.model, ctx, batch_size=1)
    differ = [i for i, (a, b) in enumerate(zip(batched, single, strict=True)) if a.text != b.text]
    details = {
        "answers": [a.text for a in batched],
        "output_tokens": sum(a.output_tokens for a in batched),
        "batched_equals_single": not differ,
        "batched_differs_at": differ,
    }
    note = "batched == single" if not differ else f"batched != single at {differ} (noted)"
    return f"{len(batched)} well-formed answers; {note}", details


def _lora_spec(ctx: Context) -> dict[str, Any]:
    from flywheel.config.schema import LoRAConfig, TrainingConfig

    train = _write_jsonl(ctx.work / "sft.jsonl", SFT_ROWS)
    training = TrainingConfig(**LORA_TRAINING)
    lora = LoRAConfig(adapter_dim=8, alpha=16, adapter_dropout=0.0)
    return {
        "base": _source(ctx).to_dict(),
        "train_file": str(train),
        "validation_file": str(train),
        "output_dir": str(ctx.work / "adapter"),
        "training": training.model_dump(mode="json"),
        "lora": lora.model_dump(mode="json"),
        "max_seq_length": 256,
        "torch_threads": ctx.threads,
    }


def _logits(model: Any, ctx: Context) -> Any:
    import torch

    inputs = ctx.tokenizer("What is the weather in Paris?", return_tensors="pt").to(ctx.device)
    with torch.no_grad():
        return model(**inputs).logits.float()


def step_lora(ctx: Context) -> tuple[str, dict[str, Any]]:
    """``train_lora`` on the device; the adapter must reload and answer exactly the same."""
    import torch

    from flywheel.platforms.local.lora import train_lora

    check(ctx.model is not None, "needs the base model of the 'load' step, which failed")
    spec = _lora_spec(ctx)
    result = train_lora(spec)
    metrics = result.metrics
    losses, val = metrics["train_loss"], metrics["val_loss"]
    check(metrics["device"] == ctx.device, f"trained on {metrics['device']}, not {ctx.device}")
    check(sum(losses[-2:]) < sum(losses[:2]), f"training loss did not fall: {losses}")
    check(val[-1] < val[0], f"validation loss did not fall: {val}")
    check((result.output_dir / "adapter_model.safetensors").is_file(), "no adapter file saved")
    reloaded = load_causal_lm(_source(ctx), device=ctx.device, adapter_dir=str(result.output_dir))
    check(_param_device(reloaded) == ctx.device, f"adapter reloaded on {_param_device(reloaded)}")
    trained_texts = [a.text for a in _answer(result.model, ctx, batch_size=4)]
    reloaded_texts = [a.text for a in _answer(reloaded, ctx, batch_size=4)]
    check(trained_texts == reloaded_texts, "the reloaded adapter answers differently (greedy)")
    trained, again, base = (
        _logits(result.model, ctx),
        _logits(reloaded, ctx),
        _logits(ctx.model, ctx),
    )
    check(not torch.allclose(trained, base), "the adapter leaves the base model's logits unchanged")
    details = {
        "train_loss": losses,
        "val_loss": val,
        "tokens_per_second": metrics["tokens_per_second"],
        "reloaded_logits_equal": bool(torch.equal(trained, again)),
        "reloaded_logits_max_abs_diff": float((trained - again).abs().max()),
    }
    return f"loss {losses[0]:.3f} -> {losses[-1]:.3f}; reload answers identical", details


def step_embeddings(ctx: Context) -> tuple[str, dict[str, Any]]:
    """``train_embeddings`` (which loads through ``load_sentence_model``) on the device."""
    from flywheel.platforms.local.embeddings import load_sentence_model, train_embeddings

    check(ctx.sentence_dir is not None, "needs the tiny BERT of the 'build' step, which failed")
    out = ctx.work / "embedder"
    spec = {
        "base": {"kind": "hf", "name": "st", "path": str(ctx.sentence_dir)},
        "train_file": str(_write_jsonl(ctx.work / "emb.jsonl", EMBEDDING_ROWS)),
        "validation_file": str(ctx.work / "emb.jsonl"),
        "output_dir": str(out),
        **EMBEDDING_TRAINING,
        "torch_threads": ctx.threads,
    }
    metrics = train_embeddings(spec)
    val = metrics["val_loss"]
    check(metrics["steps"] == 6, f"{metrics['steps']} steps, expected 6")
    check(val[-1] < val[0], f"validation loss did not fall: {val}")
    model = load_sentence_model(ModelSource(kind="hf", name="st", path=str(out)), max_seq_length=32)
    check(model.device.type == ctx.device, f"saved model loads on {model.device}, not {ctx.device}")
    vectors = model.encode(["weather in Paris", "cancel order"])
    check(vectors.shape[0] == 2, f"encode gave shape {vectors.shape}")
    details = {"train_loss": metrics["train_loss"], "val_loss": val}
    return f"val loss {val[0]:.3f} -> {val[-1]:.3f}; reloads on {model.device.type}", details


STEPS: list[tuple[str, Step]] = [
    ("environment", step_environment),
    ("build", step_build),
    ("load", step_load),
    ("generate", step_generate),
    ("lora", step_lora),
    ("embeddings", step_embeddings),
]


# -- running and reporting ------------------------------------------------------------------


def _cuda() -> Any:
    """``torch.cuda`` when a GPU is visible, else ``None`` (memory figures are GPU-only).

    Without torch, too: the 'environment' step then reports the missing import in the table.
    """
    try:
        import torch
    except ImportError:
        return None

    return torch.cuda if torch.cuda.is_available() else None


def run_step(name: str, step: Step, ctx: Context) -> StepResult:
    """Run one step, timing it and catching its failure so the later steps still run."""
    cuda = _cuda()
    if cuda is not None:
        cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    try:
        result, details = step(ctx)
        ok = True
    except Exception as exc:  # any failure is this step's result, not the end of the run
        ok, result = False, f"FAIL {type(exc).__name__}: {exc}"
        details = {"traceback": traceback.format_exc()}
    if cuda is not None:
        cuda.synchronize()
    seconds = time.perf_counter() - started
    peak = cuda.max_memory_allocated() / 2**20 if cuda is not None else None
    return StepResult(name, ctx.device, round(seconds, 3), ok, result, peak, details)


def print_table(results: list[StepResult]) -> None:
    """The summary table on stdout (rich, which the GPU image has too)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="local platform GPU check")
    for column in ("step", "device", "seconds", "result", "peak GPU MiB"):
        table.add_column(column)
    for r in results:
        peak = "-" if r.peak_gpu_mib is None else f"{r.peak_gpu_mib:.1f}"
        result = r.result if r.ok else f"[red]{r.result}[/red]"
        table.add_row(r.step, r.device, f"{r.seconds:.2f}", result, peak)
    Console(width=160).print(table)
    for r in results:
        if not r.ok:
            print(f"--- {r.step} ---\n{r.details.get('traceback', '')}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run every step, print the table, write ``gpu_check.json``; 1 when a check failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--require-cuda", action="store_true", help="fail when no GPU is seen")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as work:
        ctx = Context(work=Path(work), threads=args.threads, require_cuda=args.require_cuda)
        results = [run_step(name, step, ctx) for name, step in STEPS]
    ok = all(r.ok for r in results)
    summary = {"ok": ok, "device": ctx.device, "steps": [asdict(r) for r in results]}
    (args.out / "gpu_check.json").write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    print_table(results)
    print(f"{'PASS' if ok else 'FAIL'}: {args.out / 'gpu_check.json'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
