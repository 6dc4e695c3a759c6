"""Batched left-padded greedy generation with a tiny random Llama."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flywheel.platforms.local.generation import Chat, LocalGenerator
from flywheel.platforms.local.models import (
    ModelSource,
    load_causal_lm,
    load_tokenizer,
    render_chat,
    supports_tools,
)

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
CHATS: list[Chat] = [
    ([{"role": "user", "content": "Paris?"}], None),
    (
        [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the weather in Paris today? Please answer."},
        ],
        TOOLS,
    ),
    ([{"role": "user", "content": "Book a table for two at eight."}], None),
]


@pytest.fixture(scope="module")
def generator(tiny_chat_model: Path) -> LocalGenerator:
    source = ModelSource(kind="hf", name="tiny", path=str(tiny_chat_model))
    tokenizer = load_tokenizer(source)
    model = load_causal_lm(source, device="cpu")
    return LocalGenerator(tokenizer=tokenizer, model=model, device="cpu", batch_size=8)


def _texts(generator: LocalGenerator, chats: list[Chat]) -> list[Any]:
    answers = generator.generate(chats, max_new_tokens=12)
    assert answers is not None
    return [(a.text, a.output_tokens, a.input_tokens) for a in answers]


def test_batched_generation_equals_one_at_a_time(generator: LocalGenerator) -> None:
    batched = _texts(generator, CHATS)
    generator.batch_size = 1
    try:
        single = _texts(generator, CHATS)
    finally:
        generator.batch_size = 8
    assert batched == single
    assert all(tokens > 0 for _, tokens, _ in batched)
    assert batched[1][2] > batched[0][2]  # the longer prompt (with tools) has more tokens


def test_answers_are_openai_messages_with_latency(generator: LocalGenerator) -> None:
    answers = generator.generate(CHATS[:1], max_new_tokens=4)
    assert answers is not None
    (answer,) = answers
    assert answer.message["role"] == "assistant"
    assert isinstance(answer.message["content"], str)
    assert answer.latency_ms > 0
    assert answer.output_tokens <= 4


def test_stop_between_batches(generator: LocalGenerator) -> None:
    assert generator.generate(CHATS, max_new_tokens=4, should_stop=lambda: True) is None


def test_tools_are_rendered_into_the_prompt_when_the_template_ignores_them(
    generator: LocalGenerator,
) -> None:
    tokenizer = generator.tokenizer
    assert not supports_tools(tokenizer)
    prompt = render_chat(tokenizer, CHATS[1][0], TOOLS, add_generation_prompt=True)
    assert "<tools>" in prompt
    assert '"get_weather"' in prompt
    assert prompt.endswith("<|im_start|>assistant\n")


TOOL_TEMPLATE = (
    "{% if tools %}<|im_start|>system\nTOOLS {{ tools | tojson }}<|im_end|>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
    "{% for c in m.get('tool_calls') or [] %}CALL {{ c['function']['name'] }} "
    "{{ c['function']['arguments']['city'] }}{% endfor %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_a_tool_aware_template_renders_tools_and_object_arguments(
    generator: LocalGenerator,
) -> None:
    tokenizer = generator.tokenizer
    original = tokenizer.chat_template
    tokenizer.chat_template = TOOL_TEMPLATE
    try:
        assert supports_tools(tokenizer)
        call = {
            "id": "c1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        }
        messages = [
            {"role": "user", "content": "Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
        ]
        prompt = render_chat(tokenizer, messages, TOOLS, add_generation_prompt=False)
    finally:
        tokenizer.chat_template = original
    assert prompt.startswith('<|im_start|>system\nTOOLS [{"type": "function"')
    assert "CALL get_weather Paris" in prompt  # string arguments became an object
    assert "<tools>" not in prompt  # our own rendering stays out of the way
