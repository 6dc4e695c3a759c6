"""The NeMo Microservices Platform (NMP) backend of the model-platform port."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flywheel.config.nim_catalogue import NimEntry, catalogue_entry, load_catalogue
from flywheel.platforms.nemo.calls import RetryPolicy
from flywheel.platforms.nemo.platform import NemoPlatform

if TYPE_CHECKING:
    from flywheel.settings import Settings


def create_platform(settings: Settings) -> NemoPlatform:
    """The NMP platform the settings describe (the workflow runtime's entry point)."""
    return NemoPlatform.from_settings(settings)


__all__ = [
    "NemoPlatform",
    "NimEntry",
    "RetryPolicy",
    "catalogue_entry",
    "create_platform",
    "load_catalogue",
]
