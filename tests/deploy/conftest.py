"""Fixtures for the deployment checks: repository paths, the settings' env var names, Helm.

Helm is found as a ``helm`` binary (``$FLYWHEEL_HELM`` or ``PATH``) and otherwise through
``helm-python-sdk`` (the Helm v4 Go SDK behind a C ABI, no binary needed), which
``scripts/test`` installs. Neither being there is a failure, never a skip: CI must run these.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from flywheel.settings import Settings
from flywheel.workflow.options import WorkflowOptions

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "flywheel"
COMPOSE = DEPLOY / "docker-compose.yaml"


def settings_env_names() -> set[str]:
    """Every environment variable the service settings read (``Settings`` + workflow options)."""
    names: set[str] = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        choices = getattr(alias, "choices", [alias] if isinstance(alias, str) else [])
        names.update(c for c in choices if isinstance(c, str) and c.isupper())
    prefix = WorkflowOptions.model_config.get("env_prefix", "")
    names.update(f"{prefix}{name}".upper() for name in WorkflowOptions.model_fields)
    return names


def settings_from_env(env: dict[str, str]) -> Settings:
    """The settings a process would read with exactly this environment (and no ``.env``)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in settings_env_names():
            patch.delenv(name, raising=False)
        for name, value in env.items():
            patch.setenv(name, value)
        return Settings(_env_file=None)  # type: ignore[call-arg]


@pytest.fixture(scope="session")
def env_names() -> set[str]:
    names = settings_env_names()
    assert {"MONGODB_URL", "ELASTICSEARCH_URL", "REDIS_URL", "NMP_TOKEN"} <= names
    return names


@dataclass
class Helm:
    """``helm lint`` and ``helm template`` through whichever Helm this machine has."""

    binary: str | None

    @property
    def description(self) -> str:
        if self.binary:
            out = subprocess.run(
                [self.binary, "version", "--short"], capture_output=True, text=True, check=True
            )
            return f"helm binary {self.binary} {out.stdout.strip()}"
        import helm_python

        sdk = helm_python.helm_sdk_version()
        return f"helm-python-sdk {helm_python.__version__} (Helm SDK {sdk})"

    def lint(self, values: dict[str, Any] | None = None) -> list[str]:
        """Lint findings of severity warning or error (strict lint fails on warnings)."""
        if self.binary:
            args = [self.binary, "lint", "--strict", str(CHART)]
            args += _values_args(values)
            done = subprocess.run(args, capture_output=True, text=True, check=False)
            return [] if done.returncode == 0 else [done.stdout + done.stderr]
        import helm_python

        report = helm_python.lint(CHART, values, strict=True)
        problems = [m["error"] for m in report["messages"] if m["severity"] >= 2]
        return problems + list(report["errors"])

    def template(self, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """The rendered objects (NOTES.txt left out), like ``helm template``."""
        if self.binary:
            args = [self.binary, "template", "fw", str(CHART), "--namespace", "flywheel"]
            args += _values_args(values)
            done = subprocess.run(args, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise HelmFailed(done.stderr)
            text = done.stdout
        else:
            import helm_python

            try:
                rendered = helm_python.Chart.load(CHART).render(
                    values, name="fw", namespace="flywheel", is_install=True
                )
            except helm_python.HelmError as exc:
                raise HelmFailed(str(exc)) from exc
            text = "\n---\n".join(
                body for path, body in sorted(rendered.items()) if not path.endswith(".txt")
            )
        return [doc for doc in yaml.safe_load_all(text) if doc]


class HelmFailed(Exception):
    """Helm refused the chart or the values."""


def _values_args(values: dict[str, Any] | None) -> list[str]:
    if not values:
        return []
    fd, path = tempfile.mkstemp(prefix="flywheel-values-", suffix=".yaml")
    with os.fdopen(fd, "w") as out:
        yaml.safe_dump(values, out)
    return ["--values", path]


@pytest.fixture(scope="session")
def helm() -> Helm:
    binary = os.environ.get("FLYWHEEL_HELM") or shutil.which("helm")
    if not binary:
        try:
            import helm_python  # noqa: F401
        except ImportError:
            pytest.fail(
                "no Helm: put a helm binary on PATH (or set FLYWHEEL_HELM), or install "
                "helm-python-sdk (scripts/test does)"
            )
    return Helm(binary)
