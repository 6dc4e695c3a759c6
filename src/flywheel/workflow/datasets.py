"""The dataset step's port and its adapter over the dataset build services.

The workflow only needs "build this job's datasets into this directory and tell me which
file plays which role". Keeping that behind :class:`DatasetBuilder` lets tests substitute
a tiny builder and keeps the workflow independent of the build pipeline's internals.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from flywheel.config.schema import CandidateModel, EmbeddingModelRef, JobConfig
from flywheel.domain.jobs import Job, JobType
from flywheel.errors import ConfigError, PlatformUnavailable
from flywheel.platforms.base import DatasetFiles
from flywheel.stores.base import LogStore

if TYPE_CHECKING:
    import httpx
    import numpy as np
    import numpy.typing as npt

    from flywheel.platforms.local.embedder import TextEmbedder
    from flywheel.services.datasets import DatasetBuildResult

log = structlog.get_logger(__name__)

ICL_PREFIX = "icl:"
#: The embedding model is asked to embed this once before the build, so a model that
#: cannot load fails the stage up front, naming itself, instead of deep in the ICL stage.
EMBED_PROBE = "flywheel embedding check"
_SELECTION_FIELD = "icl_config.similarity_config.embedding_model"


@dataclass(frozen=True)
class BuiltDatasets:
    """Where a build put its files (role → absolute path) and what it counted."""

    files: dict[str, str]
    stats: dict[str, Any] = field(default_factory=dict)
    workload_type: str | None = None


class DatasetBuilder(Protocol):
    """Builds one job's datasets."""

    def build(self, job: Job, config: JobConfig, out_dir: Path) -> BuiltDatasets:
        """Write the job's datasets under ``out_dir``.

        Raises:
            DatasetError: the logs cannot make a usable dataset (a permanent job failure).
        """
        ...


class LogStoreDatasetBuilder:
    """Builds datasets from the log store with :mod:`flywheel.services.datasets` (LLM jobs)
    and :mod:`flywheel.services.retrieval_datasets` (embedding jobs)."""

    def __init__(
        self,
        log_store: LogStore,
        *,
        torch_threads: int = 0,
        embedding_transport: httpx.BaseTransport | None = None,
    ) -> None:
        """Read logs from ``log_store``; a local embedding model uses ``torch_threads``
        (0: torch's default); ``embedding_transport`` replaces an endpoint's HTTP transport."""
        self._logs = log_store
        self._torch_threads = torch_threads
        self._transport = embedding_transport

    def build(self, job: Job, config: JobConfig, out_dir: Path) -> BuiltDatasets:
        """Run the right build for the job type."""
        if job.job_type is JobType.embedding_job:
            from flywheel.services.retrieval_datasets import (
                TRAINING_FILE,
                VALIDATION_FILE,
                build_retrieval_datasets,
            )

            retrieval = build_retrieval_datasets(
                log_store=self._logs,
                client_id=job.client_id,
                workload_id=job.workload_id,
                config=config,
                out_dir=out_dir,
            )
            return BuiltDatasets(
                files={
                    "root": str(out_dir),
                    "beir_dir": str(out_dir / "eval"),
                    "train": str(retrieval.files[TRAINING_FILE]),
                    "validation": str(retrieval.files[VALIDATION_FILE]),
                },
                stats=retrieval.stats.to_dict(),
                workload_type="retrieval",
            )
        from flywheel.services.datasets import EVAL_FILE, TRAIN_FILE, VAL_FILE

        chat = build_llm_datasets(
            self._logs,
            client_id=job.client_id,
            workload_id=job.workload_id,
            config=config,
            out_dir=out_dir,
            torch_threads=self._torch_threads,
            transport=self._transport,
        )
        files = {
            "root": str(out_dir),
            "eval": str(chat.files[EVAL_FILE].path),
            "train": str(chat.files[TRAIN_FILE].path),
            "validation": str(chat.files[VAL_FILE].path),
        }
        files.update({f"{ICL_PREFIX}{name}": str(path) for name, path in chat.icl_files.items()})
        stats: dict[str, Any] = {
            key: chat.manifest[key]
            for key in ("stages", "splits", "tool_calling_records", "workload_type", "seed")
            if key in chat.manifest
        }
        return BuiltDatasets(files=files, stats=stats, workload_type=chat.workload_type)


def dataset_files(files: dict[str, str]) -> DatasetFiles:
    """The platform port's view of the recorded files."""

    def path(role: str) -> Path | None:
        return Path(files[role]) if files.get(role) else None

    return DatasetFiles(
        root=Path(files["root"]),
        eval=path("eval"),
        icl_eval={
            role[len(ICL_PREFIX) :]: Path(p)
            for role, p in files.items()
            if role.startswith(ICL_PREFIX)
        },
        train=path("train"),
        validation=path("validation"),
        beir_dir=path("beir_dir"),
    )


Embed = Callable[[list[str]], "npt.NDArray[np.floating[Any]]"]
TokenCounter = Callable[[str], int]


def _ref_text(ref: EmbeddingModelRef) -> str:
    where = ref.endpoint_url or ref.hf_model or ref.python_package or "no source"
    return f"{ref.name!r} ({where})"


def _open_embedder(
    ref: EmbeddingModelRef, *, torch_threads: int, transport: httpx.BaseTransport | None
) -> TextEmbedder:
    """Open and probe the embedder; any failure but a transient one is a ConfigError."""
    from flywheel.platforms.local.embedder import open_embedder

    fix = (
        f"fix {_SELECTION_FIELD} (hf_model, python_package or endpoint_url) or set "
        "icl_config.example_selection to uniform_distribution"
    )
    try:
        embedder = open_embedder(ref, torch_threads=torch_threads, transport=transport)
        embedder.embed([EMBED_PROBE])
    except PlatformUnavailable:
        raise  # transient (endpoint down, timeout): the step retries
    except ImportError as exc:
        raise ConfigError(
            f"semantic ICL selection: embedding model {_ref_text(ref)} needs "
            f"{exc.name or 'sentence-transformers'}, which is not installed: "
            "pip install 'flywheel[local]', or set "
            f"{_SELECTION_FIELD}.endpoint_url to an OpenAI-compatible /v1/embeddings server"
        ) from exc
    except Exception as exc:
        # Loaders fail in many ways (OSError, ValueError, HF errors, a 4xx): all mean the
        # configured model cannot serve, which the person running the job must fix.
        raise ConfigError(
            f"semantic ICL selection: embedding model {_ref_text(ref)} cannot be used: {exc}; {fix}"
        ) from exc
    return embedder


def build_llm_datasets(
    log_store: LogStore,
    *,
    client_id: str,
    workload_id: str,
    config: JobConfig,
    out_dir: Path,
    torch_threads: int = 0,
    transport: httpx.BaseTransport | None = None,
) -> DatasetBuildResult:
    """An LLM job's datasets with every aid the build can use: the candidates' own
    tokenizers and, for semantic ICL selection, the configured embedder. The workflow and
    ``flywheel datasets build`` both call this, so they write the same files."""
    from flywheel.services.datasets import build_datasets

    counters, notes = candidate_token_counters(config)
    with selection_embedder(config, torch_threads=torch_threads, transport=transport) as embed:
        return build_datasets(
            log_store=log_store,
            client_id=client_id,
            workload_id=workload_id,
            config=config,
            out_dir=out_dir,
            token_counters=counters,
            token_counter_notes=notes,
            embed=embed,
        )


@contextmanager
def selection_embedder(
    config: JobConfig,
    *,
    torch_threads: int = 0,
    transport: httpx.BaseTransport | None = None,
) -> Iterator[Embed | None]:
    """The embedder ``semantic_similarity`` ICL selection needs, or None when it is not used.

    Opened (and probed) before the build, so a model that cannot load fails the datasets
    stage with its name and the fix instead of silently degrading to uniform selection.

    Raises:
        ConfigError: the configured embedding model cannot be loaded or called.
        PlatformUnavailable: its endpoint is transiently unreachable.
    """
    icl = config.icl_config
    wanted = (
        icl.example_selection == "semantic_similarity"
        and icl.max_examples > 0
        and bool(config.candidates_for(JobType.llm_job))
    )
    if not wanted:
        yield None
        return
    embedder = _open_embedder(
        icl.similarity_config.embedding_model, torch_threads=torch_threads, transport=transport
    )
    try:
        yield embedder.embed
    finally:
        close = getattr(embedder, "close", None)
        if callable(close):
            close()


@functools.lru_cache(maxsize=8)
def _tokenizer_counter(path: str, gguf_file: str | None) -> TokenCounter:
    """A token counter over the tokenizer at ``path`` (cached: a GGUF one takes seconds)."""
    from transformers import AutoTokenizer

    kwargs: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
    # Local files only: a build must not download from the hub (offline workers, latency).
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, **kwargs)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        # The Rust tokenizer directly: no per-call Python wrapping, no length warnings.
        return lambda text: len(backend.encode(text, add_special_tokens=False).ids)
    return lambda text: len(tokenizer.encode(text, add_special_tokens=False))


def _candidate_counter(candidate: CandidateModel) -> tuple[TokenCounter | None, str]:
    if candidate.endpoint_url:
        return None, "estimate: endpoint candidate, its tokenizer is not on this machine"
    if not (candidate.hf_model or candidate.python_package):
        return None, "estimate: no local model files (the platform serves it)"
    from flywheel.platforms.local.models import candidate_source

    try:
        source = candidate_source(candidate)
        counter = _tokenizer_counter(source.path or "", source.gguf_file)
    except ImportError:
        return None, "estimate: transformers is not installed (pip install 'flywheel[local]')"
    except Exception as exc:
        # A missing or broken tokenizer costs accuracy of the budgets, not the build.
        log.warning("candidate_tokenizer_unavailable", candidate=candidate.name, error=str(exc))
        return None, f"estimate: tokenizer not loadable ({exc})"
    file = f" ({source.gguf_file})" if source.gguf_file else ""
    return counter, f"tokenizer: {source.path}{file}"


def candidate_token_counters(
    config: JobConfig,
) -> tuple[dict[str, TokenCounter], dict[str, str]]:
    """Each LLM candidate's own tokenizer as a counter, where its files are on this machine.

    Budgets (the over-context filter and the ICL sets) should count as the candidate does;
    the bytes/3 estimate over-counts and wastes context. Only tokenizers are loaded, never
    weights. Returns the counters and, for every LLM candidate, a note of which counter it
    gets and why (recorded in the manifest).
    """
    counters: dict[str, TokenCounter] = {}
    notes: dict[str, str] = {}
    for candidate in config.candidates_for(JobType.llm_job):
        counter, note = _candidate_counter(candidate)
        notes[candidate.name] = note
        if counter is not None:
            counters[candidate.name] = counter
    return counters, notes
