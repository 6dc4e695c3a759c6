"""The catalogue of NIM configurations the NMP platform supports (``nim_catalogue.yaml``).

A job configuration inherits an entry's settings at resolution (:func:`inherit`, called by
:func:`flywheel.config.resolve.resolve_job_config`; the rule is documented on
:class:`~flywheel.config.schema.CandidateModel`), and the NMP platform falls back to an
entry for what a candidate's ``nim`` settings still leave out. The catalogue lives in the
configuration layer so that resolving a configuration never imports a platform.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from importlib.resources import files
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from flywheel.errors import ConfigError

#: Candidate fields that name a source other than an NMP deployment by ``name``.
LOCAL_SOURCES = ("hf_model", "python_package", "gguf_file", "endpoint_url")


class NimEntry(BaseModel):
    """One deployable NIM."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: Literal["llm", "judge", "embedding"]
    image: str
    tag: str
    context_length: int = Field(gt=0)
    gpus: int = Field(ge=1)
    pvc_size: str
    customization_target: str | None = None
    finetuning_types: tuple[Literal["lora", "all_weights", "lora_merged"], ...] = ()

    @property
    def model_type(self) -> Literal["llm", "embedding"]:
        """The candidate ``model_type`` this NIM serves (judges are LLMs)."""
        return "embedding" if self.kind == "embedding" else "llm"


@functools.cache
def load_catalogue() -> dict[str, NimEntry]:
    """The shipped catalogue, by model name.

    Raises:
        ConfigError: the packaged YAML is malformed or names a model twice.
    """
    text = files("flywheel.config").joinpath("nim_catalogue.yaml").read_text("utf-8")
    raw = yaml.safe_load(text) or {}
    entries: dict[str, NimEntry] = {}
    for item in raw.get("nims", []):
        try:
            entry = NimEntry.model_validate(item)
        except ValueError as exc:
            raise ConfigError(f"NIM catalogue entry {item!r} is invalid: {exc}") from exc
        if entry.name in entries:
            raise ConfigError(f"NIM catalogue names {entry.name!r} twice")
        entries[entry.name] = entry
    return entries


def catalogue_entry(name: str) -> NimEntry | None:
    """The catalogue entry for model ``name``, if there is one."""
    return load_catalogue().get(name)


class CatalogueMismatch(ValueError):
    """A candidate asks for a catalogue entry that does not exist or does not fit."""


def entry_for(candidate: Mapping[str, Any]) -> NimEntry | None:
    """The entry a raw candidate mapping inherits from, or ``None`` (see ``CandidateModel``).

    Raises:
        CatalogueMismatch: ``catalogue: true`` but no entry has the candidate's name.
    """
    wanted = candidate.get("catalogue")
    name = candidate.get("name")
    if wanted is False or not isinstance(name, str):
        return None
    entry = catalogue_entry(name)
    if wanted is True:
        if entry is None:
            raise CatalogueMismatch(
                f"catalogue: true, but the NIM catalogue has no model named {name!r}; use one "
                "of its names or set nim.image_name/image_tag yourself"
            )
        return entry
    if any(candidate.get(field) for field in LOCAL_SOURCES):
        return None  # runs in-process or at its own endpoint: not a NIM deployment
    return entry


def inherit(candidate: Mapping[str, Any]) -> dict[str, Any]:
    """The raw candidate with every setting it leaves unset filled from its catalogue entry.

    Only keys *absent* from the mapping are filled, so anything written in a configuration
    layer wins, even when it equals the schema default.

    Raises:
        CatalogueMismatch: no entry for ``catalogue: true``, or an explicit ``model_type``
            that contradicts the entry.
    """
    result = dict(candidate)
    entry = entry_for(candidate)
    if entry is None:
        return result
    model_type = result.get("model_type")
    if model_type is not None and model_type != entry.model_type:
        raise CatalogueMismatch(
            f"model_type {model_type!r} contradicts the NIM catalogue, which lists "
            f"{entry.name!r} as a {entry.kind} model"
        )
    result.setdefault("model_type", entry.model_type)
    result.setdefault("context_length", entry.context_length)
    result.setdefault("gpus", entry.gpus)
    raw_nim = result.get("nim")
    nim: dict[str, Any] = dict(raw_nim) if isinstance(raw_nim, Mapping) else {}
    if raw_nim is not None and not isinstance(raw_nim, Mapping):
        return result  # let validation report the malformed ``nim``
    nim.setdefault("image_name", entry.image)
    nim.setdefault("image_tag", entry.tag)
    nim.setdefault("pvc_size", entry.pvc_size)
    if entry.customization_target is not None:
        nim.setdefault("customization_target", entry.customization_target)
    elif nim.get("customization_target") is None:
        # The NIM cannot be fine-tuned on NMP: skip customization unless the config says.
        result.setdefault("customization_enabled", False)
    result["nim"] = nim
    return result
