"""Tiny random models built in memory, so local-platform tests need no downloads.

* :func:`build_tiny_chat_model`: a 2-layer Llama (hidden size 64) with a byte-level BPE
  tokenizer trained on a few sentences and a ChatML template that ignores ``tools``
  (like SmolLM2's), saved as a Hugging Face directory.
* :func:`build_tiny_sentence_model`: a 2-layer BERT with a WordPiece tokenizer and mean
  pooling, saved as a sentence-transformers directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

CORPUS = [
    "You are a helpful assistant. What is the weather in Paris today?",
    "The weather in Paris is sunny with a light breeze.",
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
    '{"type": "function", "function": {"name": "get_weather", "parameters": {}}}',
    "# Tools You may call one or more functions. <tools></tools> <tool_response>",
    "Book a table for two at eight. Cancel my order 1234 please.",
]


def build_tiny_chat_model(directory: Path, *, seed: int = 0) -> Path:
    """Save a tiny Llama chat model and tokenizer in ``directory``; the directory."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<pad>", "<s>", "<unk>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator(CORPUS * 5, trainer)
    tokenizer: Any = cast(Any, PreTrainedTokenizerFast)(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="<|im_end|>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    tokenizer.chat_template = CHATML
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def build_tiny_sentence_model(directory: Path, *, seed: int = 0) -> Path:
    """Save a tiny BERT sentence-transformers model in ``directory``; the directory."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    backend = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    backend.train_from_iterator(
        CORPUS * 5, trainers.WordPieceTrainer(vocab_size=300, special_tokens=special)
    )
    tokenizer: Any = cast(Any, PreTrainedTokenizerFast)(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    torch.manual_seed(seed)
    bert = BertModel(
        BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
        )
    )
    base = directory / "bert"
    bert.save_pretrained(base)
    tokenizer.save_pretrained(base)
    transformer = Transformer(str(base), max_seq_length=64)
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    out = directory / "sentence"
    SentenceTransformer(modules=[transformer, pooling], device="cpu").save(str(out))
    return out
