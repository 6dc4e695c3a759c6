"""Tiny training sets for the tiny models of :mod:`tests.support.tiny_models`.

The LoRA and embedding unit tests and ``benchmarks/gpu_check.py`` train on the same few
rows, written in the words of the tiny tokenizer's corpus so they encode to few tokens.
Kept in one place so that the GPU check trains on what the CPU tests proved learnable.
"""

from __future__ import annotations

from typing import Any

#: One ``get_weather`` tool call, as an assistant message carries it.
CALL: dict[str, Any] = {
    "id": "c1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}


def sft_rows(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat SFT rows: a tool call (offered ``tools``) and a plain answer, each twice.

    ``tools`` is a parameter because the unit tests offer a bare tool (the one in the tiny
    tokenizer's corpus) while the GPU check offers one with typed parameters. New lists each
    call, so a test that edits its rows cannot change another's.
    """
    return [
        {
            "messages": [
                {"role": "user", "content": "What is the weather in Paris today?"},
                {"role": "assistant", "content": "", "tool_calls": [CALL]},
            ],
            "tools": tools,
        },
        {
            "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "Book a table for two at eight."},
                {"role": "assistant", "content": "The weather in Paris is sunny."},
            ]
        },
    ] * 2


#: Embedding training settings under which :func:`embedding_rows` measurably learn on the
#: tiny BERT in 6 steps (one per epoch: the 3 rows make one batch).
EMBEDDING_TRAINING: dict[str, Any] = {
    "epochs": 6,
    "batch_size": 3,
    "learning_rate": 5e-3,
    "max_seq_length": 32,
    "temperature": 0.05,
    "seed": 7,
}


def embedding_rows() -> list[dict[str, Any]]:
    """Embedding rows: a query, its positive passage and one hard negative each.

    New lists each call, so a test that edits its rows cannot change another's.
    """
    return [
        {
            "query": "weather in Paris",
            "pos_doc": "The weather in Paris is sunny with a light breeze.",
            "neg_doc": ["Cancel my order 1234 please."],
        },
        {
            "query": "table for two",
            "pos_doc": "Book a table for two at eight.",
            "neg_doc": ["The weather in Paris is sunny."],
        },
        {
            "query": "cancel order",
            "pos_doc": "Cancel my order 1234 please.",
            "neg_doc": ["Book a table for two at eight."],
        },
    ]
