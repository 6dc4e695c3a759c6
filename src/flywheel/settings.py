"""Service settings: read once from the environment (and an optional ``.env``), validated at start.

Only composition roots (the API factory, the Celery app module, the CLI) call
:func:`get_settings`; everything else receives values as arguments. Unset database URLs
select the embedded SQLite backends under ``data_dir``, so one command runs on a fresh machine.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
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
    es_ca_certs: Path | None = Field(
        default=None,
        validation_alias=_env("ES_CA_CERTS", "es_ca_certs"),
        description="PEM bundle of the CA(s) that signed Elasticsearch's certificate "
        "(a private CA); unset: the public CAs (certifi).",
    )
    mongodb_ca_file: Path | None = Field(
        default=None,
        validation_alias=_env("MONGODB_CA_FILE", "mongodb_ca_file"),
        description="PEM bundle of MongoDB's CA, passed as tlsCAFile (and tls=true) unless "
        "MONGODB_URL names its own tlsCAFile.",
    )
    redis_ca_certs: Path | None = Field(
        default=None,
        validation_alias=_env("REDIS_CA_CERTS", "redis_ca_certs"),
        description="PEM bundle of Redis's CA, for rediss:// URLs (broker, GPU leases, health).",
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
    nmp_ca_bundle: Path | None = Field(
        default=None,
        validation_alias=_env("NMP_CA_BUNDLE", "nmp_ca_bundle"),
        description="PEM bundle of the CA(s) that signed NMP's certificates (a private CA).",
    )
    nmp_verify_ssl: bool = Field(
        default=True,
        validation_alias=_env("NMP_VERIFY_SSL", "nmp_verify_ssl"),
        description="Verify NMP's certificates; false only for testing (logged as a warning).",
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
    log_store_outage: Literal["fail", "wait"] = Field(
        default="fail",
        validation_alias=_env("FLYWHEEL_LOG_STORE_OUTAGE", "log_store_outage"),
        description="When the dataset step finds the log store unreachable: 'fail' the job "
        "once the transient retries are spent, or 'wait' (re-scheduled with capped backoff) "
        "until it is back, at most log_store_wait_max_s.",
    )
    log_store_wait_max_s: float = Field(
        default=3600.0,
        gt=0,
        validation_alias=_env("FLYWHEEL_LOG_STORE_WAIT_MAX_S", "log_store_wait_max_s"),
        description="'wait' mode: how long a job waits for the log store before it fails.",
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
    mlflow_tracking_uri: str | None = Field(
        default=None,
        validation_alias=_env("MLFLOW_TRACKING_URI", "mlflow_tracking_uri"),
        description="When set, every ended job is logged to MLflow (needs flywheel[mlflow]).",
    )
    mlflow_experiment_name: str = Field(
        default="flywheel",
        min_length=1,
        validation_alias=_env("MLFLOW_EXPERIMENT_NAME", "mlflow_experiment_name"),
    )

    @field_validator(
        "es_ca_certs", "mongodb_ca_file", "redis_ca_certs", "nmp_ca_bundle", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # Compose and Helm pass an unset optional variable as an empty string.
        return None if value == "" else value

    @field_validator("es_ca_certs", "mongodb_ca_file", "redis_ca_certs", "nmp_ca_bundle")
    @classmethod
    def _ca_file_exists(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        # A typo in a CA path would otherwise surface much later as a TLS handshake failure.
        if value is not None and not value.is_file():
            env = str(info.field_name).upper()
            raise ValueError(
                f"{env} {str(value)!r} is not a readable file: point it at the PEM bundle of "
                "the CA that signed the service's certificate, or unset it"
            )
        return value.resolve() if value is not None else None

    @model_validator(mode="after")
    def _tls_options_in_urls(self) -> Settings:
        # Every client of Redis and MongoDB (Celery/kombu, redis-py, pymongo) reads TLS
        # options from the URL, so putting them there reaches all of them at once.
        if self.redis_url is not None:
            self.redis_url = SecretStr(
                tls_redis_url(self.redis_url.get_secret_value(), self.redis_ca_certs)
            )
        if self.mongodb_url is not None and self.mongodb_ca_file is not None:
            self.mongodb_url = SecretStr(
                tls_mongodb_url(self.mongodb_url.get_secret_value(), self.mongodb_ca_file)
            )
        return self

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
        """The log-store URL: Elasticsearch when configured, else a SQLite file in the data dir.

        ``ES_CA_CERTS`` travels in the URL's query (``?ca_certs=``), so every caller of
        :func:`~flywheel.stores.registry.open_log_store` verifies against the private CA.
        """
        if self.elasticsearch_url is not None:
            url = self.elasticsearch_url.get_secret_value()
            if self.es_ca_certs is not None:
                # Read back by the store registry (see open_log_store), never sent to ES.
                url = _with_query(url, {"ca_certs": str(self.es_ca_certs)})
            return url
        return f"sqlite:///{(self.data_dir / 'logs.db').resolve()}"

    @property
    def platform_kind(self) -> Literal["nemo", "local"]:
        """``nemo`` when an NMP base URL is set, else the local platform."""
        return "nemo" if self.nmp_base_url else "local"


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()


def _with_query(url: str, extra: dict[str, str]) -> str:
    """``url`` with ``extra`` query options appended, keeping every option it already has."""
    parts = urlsplit(url)
    given = {name.lower() for name in parse_qs(parts.query, keep_blank_values=True)}
    added = urlencode({k: v for k, v in extra.items() if k.lower() not in given})
    if not added:
        return url
    query = f"{parts.query}&{added}" if parts.query else added
    return urlunsplit(parts._replace(query=query))


def tls_redis_url(url: str, ca_certs: Path | None) -> str:
    """The Redis URL every client gets: ``rediss://`` verifies certificates unless it says not.

    redis-py and kombu both read ``ssl_cert_reqs`` and ``ssl_ca_certs`` from the query;
    kombu alone would default a bare ``rediss://`` to *no* verification. A URL that sets
    either option keeps its own value (``ssl_cert_reqs=none`` is the explicit opt-out).

    Raises:
        ValueError: a CA bundle is given for a plain ``redis://`` URL (it would be ignored).
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme != "rediss":
        if ca_certs is not None:
            raise ValueError(
                "REDIS_CA_CERTS is set but REDIS_URL does not use TLS: write it as "
                "rediss://... (or unset REDIS_CA_CERTS)"
            )
        return url
    extra = {"ssl_cert_reqs": "required"}
    if ca_certs is not None:
        extra["ssl_ca_certs"] = str(ca_certs)
    return _with_query(url, extra)


def tls_mongodb_url(url: str, ca_file: Path) -> str:
    """``url`` with ``tls=true`` and ``tlsCAFile`` (unless it names its own)."""
    return _with_query(url, {"tls": "true", "tlsCAFile": str(ca_file)})
