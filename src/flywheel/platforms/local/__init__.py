"""The local model platform: Hugging Face models in worker processes, or OpenAI endpoints.

Importing this package is cheap; torch, transformers and peft load only inside workers
(and in the loaders of :mod:`flywheel.platforms.local.models`).
"""

from flywheel.platforms.local.platform import LocalPlatform

__all__ = ["LocalPlatform"]
