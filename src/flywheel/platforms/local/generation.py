"""Batched greedy generation with an in-process causal LM, answering as OpenAI messages.

Prompts are sorted by length and generated in batches with **left** padding, so every
prompt's last token sits at the same position and the new tokens line up. Greedy decoding
(``do_sample=False``) makes a batched answer equal the one-at-a-time answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from flywheel.platforms.local.models import render_chat
from flywheel.platforms.local.tool_prompt import parse_reply

Chat = tuple[Sequence[Mapping[str, Any]], Sequence[Mapping[str, Any]] | None]
"""One request: its messages and its tools (or ``None``)."""


@dataclass(frozen=True)
class Generated:
    """One answer: the assistant message and what it cost.

    ``latency_ms`` is the wall time of the batch the request was answered in: each request
    in a batch waited that long.
    """

    message: dict[str, Any]
    text: str
    format_errors: int
    input_tokens: int
    output_tokens: int
    latency_ms: float


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    configured = model.generation_config.eos_token_id
    ids = set(configured if isinstance(configured, list) else [configured])
    ids.add(tokenizer.eos_token_id)
    return {i for i in ids if i is not None}


class LocalGenerator:
    """Generate answers with a loaded tokenizer and model."""

    def __init__(self, *, tokenizer: Any, model: Any, device: str, batch_size: int = 8) -> None:
        self.tokenizer = tokenizer
        self.model = model
        self.device = device
        self.batch_size = batch_size

    def _generate_batch(self, prompts: list[str], max_new_tokens: int) -> list[Generated]:
        import torch
        from transformers import GenerationConfig

        tokenizer = self.tokenizer
        tokenizer.padding_side = "left"
        encoded = tokenizer(
            prompts, return_tensors="pt", padding=True, add_special_tokens=False
        ).to(self.device)
        eos = _eos_ids(self.model, tokenizer)
        config = cast(Any, GenerationConfig)(
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=sorted(eos),
        )
        started = time.perf_counter()
        with torch.inference_mode():
            output = self.model.generate(**encoded, generation_config=config)
        latency_ms = (time.perf_counter() - started) * 1000
        width = encoded["input_ids"].shape[1]
        results = []
        for row, mask in zip(output, encoded["attention_mask"], strict=True):
            new = row[width:].tolist()
            cut = next((i for i, t in enumerate(new) if t in eos), len(new))
            text = tokenizer.decode(new[:cut], skip_special_tokens=True)
            parsed = parse_reply(text)
            results.append(
                Generated(
                    message=parsed.message,
                    text=text,
                    format_errors=parsed.format_errors,
                    input_tokens=int(mask.sum()),
                    output_tokens=min(cut + 1, len(new)),
                    latency_ms=latency_ms,
                )
            )
        return results

    def generate(
        self,
        chats: Sequence[Chat],
        *,
        max_new_tokens: int,
        should_stop: Callable[[], bool] = lambda: False,
        on_batch: Callable[[int], None] = lambda done: None,
    ) -> list[Generated] | None:
        """Answer every chat; ``None`` when ``should_stop`` asked to stop between batches."""
        prompts = [
            render_chat(self.tokenizer, messages, tools, add_generation_prompt=True)
            for messages, tools in chats
        ]
        lengths = [len(self.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: lengths[i])
        answers: dict[int, Generated] = {}
        for start in range(0, len(order), self.batch_size):
            if should_stop():
                return None
            batch = order[start : start + self.batch_size]
            batch_answers = self._generate_batch([prompts[i] for i in batch], max_new_tokens)
            answers.update(zip(batch, batch_answers, strict=True))
            on_batch(len(answers))
        return [answers[i] for i in range(len(prompts))]
