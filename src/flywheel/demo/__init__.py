"""The one-command demo: a synthetic customer-service workload and its job settings.

:mod:`flywheel.demo.workload` generates realistic, seeded production traffic (tool-calling
chat logs and retrieval logs) in the log schema of ``docs/logs.md``; ``demo_config.yaml``
holds the job settings that make a whole local run fit a small CPU machine.
"""

from importlib import resources

from flywheel.demo.workload import (
    CHAT_WORKLOAD_ID,
    CLIENT_ID,
    KNOWLEDGE_BASE,
    PRODUCT_CODES,
    PRODUCTION_MODEL,
    RETRIEVAL_WORKLOAD_ID,
    SYSTEM_PROMPT,
    TOOLS,
    generate_chat_logs,
    generate_retrieval_logs,
    to_jsonl_lines,
)

DEMO_CONFIG_NAME = "demo_config.yaml"


def demo_config_text() -> str:
    """The demo's partial job configuration (YAML), as shipped in this package."""
    return resources.files("flywheel.demo").joinpath(DEMO_CONFIG_NAME).read_text("utf-8")


__all__ = [
    "CHAT_WORKLOAD_ID",
    "CLIENT_ID",
    "DEMO_CONFIG_NAME",
    "KNOWLEDGE_BASE",
    "PRODUCTION_MODEL",
    "PRODUCT_CODES",
    "RETRIEVAL_WORKLOAD_ID",
    "SYSTEM_PROMPT",
    "TOOLS",
    "demo_config_text",
    "generate_chat_logs",
    "generate_retrieval_logs",
    "to_jsonl_lines",
]
