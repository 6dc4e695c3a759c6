"""The catalogue of NIM configurations the NMP platform supports (package data).

The platform uses an entry to fill in what a candidate's ``nim`` settings leave out (image,
tag, PVC size, customization target). It is not part of the job-configuration schema.
"""

from __future__ import annotations

import functools
from importlib.resources import files
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from flywheel.errors import ConfigError


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


@functools.cache
def load_catalogue() -> dict[str, NimEntry]:
    """The shipped catalogue, by model name.

    Raises:
        ConfigError: the packaged YAML is malformed or names a model twice.
    """
    text = files("flywheel.platforms.nemo").joinpath("catalogue.yaml").read_text("utf-8")
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
