"""Job configuration: the typed schema, the shipped defaults and how layers are resolved."""

from flywheel.config.resolve import config_hash, load_base_config, resolve_job_config
from flywheel.config.schema import (
    CandidateModel,
    DataSplitConfig,
    DataSplitOverrides,
    ICLConfig,
    JobConfig,
)

__all__ = [
    "CandidateModel",
    "DataSplitConfig",
    "DataSplitOverrides",
    "ICLConfig",
    "JobConfig",
    "config_hash",
    "load_base_config",
    "resolve_job_config",
]
