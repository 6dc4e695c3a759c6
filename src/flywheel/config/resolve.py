"""Resolve a job's effective configuration from its layers, once, at job creation.

Layers, later wins: shipped ``defaults.yaml`` ← the deployment's file (``FLYWHEEL_CONFIG``)
← a named config ← the request's ``data_split_config``. Mappings merge key by key; lists
(candidates, target modules) are replaced whole, so a named config's candidate list is
exactly the candidates it runs. Candidates then inherit unset settings from the NIM
catalogue (:mod:`flywheel.config.nim_catalogue`; the rule is on ``CandidateModel``), and the
result is validated as a whole.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
import yaml
from pydantic import ValidationError

from flywheel.config.nim_catalogue import CatalogueMismatch, inherit
from flywheel.config.schema import DataSplitOverrides, JobConfig
from flywheel.domain.jobs import JobType
from flywheel.errors import ConfigError, ValidationFailed


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``base`` updated by ``override``: mappings merge recursively, the rest replaces."""
    merged: dict[str, Any] = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _read_yaml(text: str, origin: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: the top level must be a mapping of settings")
    return data


def load_base_config(path: Path | None = None) -> dict[str, Any]:
    """The shipped defaults, overridden by the deployment's YAML file when given.

    Raises:
        ConfigError: the file is missing, not YAML, or the result does not validate.
    """
    shipped = resources.files("flywheel.config").joinpath("defaults.yaml").read_text("utf-8")
    base = _read_yaml(shipped, "shipped defaults.yaml")
    if path is not None:
        try:
            text = Path(path).read_text("utf-8")
        except OSError as exc:
            raise ConfigError(
                f"FLYWHEEL_CONFIG={path}: cannot read it ({exc.strerror}); fix the path or unset it"
            ) from exc
        base = deep_merge(base, _read_yaml(text, f"FLYWHEEL_CONFIG={path}"))
    try:
        JobConfig.model_validate(base)
    except ValidationError as exc:
        raise ConfigError(f"job configuration defaults are invalid: {format_errors(exc)}") from exc
    return base


def validation_errors(
    exc: ValidationError, *, prefix: tuple[str | int, ...] = ()
) -> list[dict[str, Any]]:
    """Pydantic errors as ``[{"loc": [...], "msg": ...}]`` for API and CLI messages."""
    return [
        {"loc": [*prefix, *err["loc"]], "msg": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False)
    ]


def format_errors(exc: ValidationError) -> str:
    """One line per error: ``field.path: message``."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
        for err in exc.errors(include_url=False)
    )


def _wide_ints(value: Any, loc: tuple[str | int, ...]) -> Iterator[tuple[str | int, ...]]:
    """Where ``value`` (JSON-shaped) holds an integer outside the signed 64-bit range."""
    if isinstance(value, int) and not isinstance(value, bool):
        if not -(2**63) <= value < 2**63:
            yield loc
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _wide_ints(item, (*loc, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _wide_ints(item, (*loc, index))


def _inherit_catalogue(merged: dict[str, Any]) -> dict[str, Any]:
    """Fill each candidate's unset NIM settings from the NIM catalogue (rule: CandidateModel).

    Raises:
        ValidationFailed: a candidate's ``catalogue`` request cannot be met.
    """
    candidates = merged.get("candidates")
    if not isinstance(candidates, list):
        return merged  # validation reports it
    filled: list[Any] = []
    errors: list[dict[str, Any]] = []
    for index, candidate in enumerate(candidates):
        if not isinstance(candidate, Mapping):
            filled.append(candidate)
            continue
        try:
            filled.append(inherit(candidate))
        except CatalogueMismatch as exc:
            errors.append({"loc": ["config", "candidates", index, "catalogue"], "msg": str(exc)})
            filled.append(candidate)
    if errors:
        raise ValidationFailed(
            "the effective job configuration is invalid: "
            + "; ".join(f"candidates.{e['loc'][2]}: {e['msg']}" for e in errors),
            errors,
        )
    return {**merged, "candidates": filled}


def resolve_job_config(
    base: Mapping[str, Any],
    *,
    job_type: JobType,
    named: Mapping[str, Any] | None = None,
    overrides: DataSplitOverrides | None = None,
) -> JobConfig:
    """Merge the layers, fill candidates from the NIM catalogue, and validate the whole.

    Raises:
        ValidationFailed: the merged configuration is invalid, or has no candidate of
            ``job_type``; ``errors`` name each field.
    """
    merged = deep_merge(base, named or {})
    if overrides is not None:
        merged = deep_merge(merged, {"data_split_config": overrides.model_dump(exclude_unset=True)})
    merged = _inherit_catalogue(merged)
    try:
        config = JobConfig.model_validate(merged)
    except ValidationError as exc:
        raise ValidationFailed(
            f"the effective job configuration is invalid: {format_errors(exc)}",
            validation_errors(exc, prefix=("config",)),
        ) from exc
    if wide := list(_wide_ints(config.model_dump(mode="json"), ("config",))):
        # No store can hold them (BSON and SQLite integers are 64-bit), nor can the hash.
        raise ValidationFailed(
            "the effective job configuration is invalid: integers must fit in 64 bits",
            [{"loc": list(loc), "msg": "integer must fit in 64 bits"} for loc in wide],
        )
    if not config.candidates_for(job_type):
        wanted = "embedding" if job_type is JobType.embedding_job else "llm"
        raise ValidationFailed(
            f"no candidate with model_type {wanted!r} for job_type {job_type.value!r}; add one "
            "to the named config's candidates",
            [{"loc": ["config", "candidates"], "msg": f"no {wanted} candidate"}],
        )
    return config


def config_hash(config: JobConfig) -> str:
    """A stable content hash of a configuration, so runs can be compared and diffed."""
    canonical = orjson.dumps(config.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()[:16]
