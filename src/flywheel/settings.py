"""Service settings: read once from the environment (and an optional ``.env``), validated at start.

Only composition roots (the API factory, the Celery app module, the CLI) call
:func:`get_settings`; everything else receives values as arguments. Unset database URLs
select the embedded SQLite backends under ``data_dir``, so one command runs on a fresh machine.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    """Everything about *where* things run. What a job does lives in the job configuration."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    data_dir: Path = Field(
        default=Path(".flywheel"),
        validation_alias=_env("FLYWHEEL_DATA_DIR", "data_dir"),
        description="Embedded databases, datasets, adapters and results.",
    )
    config_path: Path | None = Field(
        default=None,
        validation_alias=_env("FLYWHEEL_CONFIG", "config_path"),
        description="Job-configuration YAML that overrides the shipped defaults.",
    )
    mongodb_url: SecretStr | None = Field(
        default=None, validation_alias=_env("MONGODB_URL", "mongodb_url")
    )
    mongodb_db: str = Field(default="flywheel", validation_alias=_env("MONGODB_DB", "mongodb_db"))
    elasticsearch_url: SecretStr | None = Field(
        default=None, validation_alias=_env("ELASTICSEARCH_URL", "elasticsearch_url")
    )
    es_collection_name: str = Field(
        default="flywheel", validation_alias=_env("ES_COLLECTION_NAME", "es_collection_name")
    )
    es_verify_certs: bool = Field(
        default=True, validation_alias=_env("ES_VERIFY_CERTS", "es_verify_certs")
    )
    redis_url: SecretStr | None = Field(
        default=None, validation_alias=_env("REDIS_URL", "redis_url")
    )
    nmp_base_url: str | None = Field(
        default=None, validation_alias=_env("NMP_BASE_URL", "nmp_base_url")
    )
    nmp_datastore_url: str | None = Field(
        default=None, validation_alias=_env("NMP_DATASTORE_URL", "nmp_datastore_url")
    )
    nmp_nim_url: str | None = Field(
        default=None, validation_alias=_env("NMP_NIM_URL", "nmp_nim_url")
    )
    nmp_token: SecretStr | None = Field(
        default=None, validation_alias=_env("NMP_TOKEN", "nmp_token")
    )
    auth_enabled: bool = Field(
        default=True, validation_alias=_env("FLYWHEEL_AUTH_ENABLED", "auth_enabled")
    )
    api_key: SecretStr | None = Field(
        default=None,
        validation_alias=_env("FLYWHEEL_API_KEY", "api_key"),
        description="Key the CLI sends to the API.",
    )
    api_url: str = Field(
        default="http://127.0.0.1:8000", validation_alias=_env("FLYWHEEL_API_URL", "api_url")
    )
    max_request_bytes: int = Field(
        default=50 * 1024 * 1024,
        gt=0,
        validation_alias=_env("FLYWHEEL_MAX_REQUEST_BYTES", "max_request_bytes"),
    )
    cors_origins: list[str] = Field(
        default_factory=list, validation_alias=_env("FLYWHEEL_CORS_ORIGINS", "cors_origins")
    )
    promotion_webhook_url: str | None = Field(
        default=None,
        validation_alias=_env("FLYWHEEL_PROMOTION_WEBHOOK_URL", "promotion_webhook_url"),
        description="Called (HMAC-signed POST) when a model is promoted or rolled back.",
    )
    promotion_webhook_secret_env: str | None = Field(
        default=None,
        pattern=r"^[A-Z_][A-Z0-9_]*$",
        validation_alias=_env(
            "FLYWHEEL_PROMOTION_WEBHOOK_SECRET_ENV", "promotion_webhook_secret_env"
        ),
        description="Name of the env var holding the webhook's HMAC secret (not the secret).",
    )
    job_webhook_url: str | None = Field(
        default=None,
        validation_alias=_env("FLYWHEEL_JOB_WEBHOOK_URL", "job_webhook_url"),
        description="Called (HMAC-signed POST with the job's summary) when a job ends, unless "
        "the job's configuration names its own notification.webhook_url.",
    )
    job_webhook_secret_env: str | None = Field(
        default=None,
        pattern=r"^[A-Z_][A-Z0-9_]*$",
        validation_alias=_env("FLYWHEEL_JOB_WEBHOOK_SECRET_ENV", "job_webhook_secret_env"),
        description="Name of the env var holding that webhook's HMAC secret (not the secret).",
    )
    gpu_budget: int = Field(
        default=1,
        ge=0,
        validation_alias=_env("FLYWHEEL_GPU_BUDGET", "gpu_budget"),
        description="GPUs the workflow may hold at once across all jobs (0: CPU-only local runs).",
    )
    max_concurrent_trainings: int = Field(
        default=1,
        ge=1,
        validation_alias=_env("FLYWHEEL_MAX_CONCURRENT_TRAININGS", "max_concurrent_trainings"),
        description="Local platform: customizations (training processes) that run at once.",
    )
    torch_threads: int = Field(
        default=0,
        ge=0,
        validation_alias=_env("FLYWHEEL_TORCH_THREADS", "torch_threads"),
        description="Threads for in-process models; 0 lets torch decide.",
    )
    training_threads: int = Field(
        default=0,
        ge=0,
        validation_alias=_env("FLYWHEEL_TRAINING_THREADS", "training_threads"),
        description="Threads for local training processes; 0: the same as torch_threads.",
    )
    log_format: Literal["json", "console"] = Field(
        default="json", validation_alias=_env("FLYWHEEL_LOG_FORMAT", "log_format")
    )
    log_level: str = Field(default="INFO", validation_alias=_env("FLYWHEEL_LOG_LEVEL", "log_level"))

    @field_validator("es_collection_name")
    @classmethod
    def _index_name_is_valid(cls, value: str) -> str:
        # Elasticsearch index names must be lowercase and may not start with -, _ or +.
        if (
            not value
            or value != value.lower()
            or value[0] in "-_+"
            or any(c in value for c in ' "*\\<|,>/?#:')
        ):
            raise ValueError(
                f"ES_COLLECTION_NAME {value!r} is not a valid Elasticsearch index name: "
                "use lowercase letters, digits, '-' or '_' and do not start with '-', '_' or '+'"
            )
        return value

    @property
    def state_store_url(self) -> str:
        """The state-store URL: MongoDB when configured, else a SQLite file in the data dir."""
        if self.mongodb_url is not None:
            return self.mongodb_url.get_secret_value()
        return f"sqlite:///{(self.data_dir / 'state.db').resolve()}"

    @property
    def log_store_url(self) -> str:
        """The log-store URL: Elasticsearch when configured, else a SQLite file in the data dir."""
        if self.elasticsearch_url is not None:
            return self.elasticsearch_url.get_secret_value()
        return f"sqlite:///{(self.data_dir / 'logs.db').resolve()}"

    @property
    def platform_kind(self) -> Literal["nemo", "local"]:
        """``nemo`` when an NMP base URL is set, else the local platform."""
        return "nemo" if self.nmp_base_url else "local"


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
