"""Helpers for applications: log OpenAI chat completions to Flywheel in the background.

See :mod:`flywheel.client.openai_logger` and docs/logs.md.
"""

from flywheel.client.openai_logger import FlywheelLogger, LoggerStats, wrap_openai
from flywheel.client.sinks import HttpSink, LogDeliveryFailed, LogSink, StoreSink

__all__ = [
    "FlywheelLogger",
    "HttpSink",
    "LogDeliveryFailed",
    "LogSink",
    "LoggerStats",
    "StoreSink",
    "wrap_openai",
]
