"""The image build file: multi-stage, non-root, without the heavy ``local`` extra."""

from __future__ import annotations

import re

from tests.deploy.conftest import DEPLOY, ROOT

DOCKERFILE = (DEPLOY / "Dockerfile").read_text()


def instructions(keyword: str) -> list[str]:
    return re.findall(rf"^{keyword}\s+(.+)$", DOCKERFILE, flags=re.MULTILINE)


def test_multi_stage_build() -> None:
    stages = instructions("FROM")
    assert len(stages) >= 2
    assert any("AS build" in s for s in stages)
    assert any("AS runtime" in s for s in stages)
    assert "COPY --from=build /opt/flywheel /opt/flywheel" in DOCKERFILE


def test_runs_as_a_non_root_user() -> None:
    (user,) = instructions("USER")
    assert user.split(":")[0] not in {"root", "0"}
    assert re.search(r"^ARG UID=(\d+)$", DOCKERFILE, flags=re.MULTILINE)
    assert int(re.findall(r"^ARG UID=(\d+)$", DOCKERFILE, flags=re.MULTILINE)[0]) >= 1000


def test_installs_the_nemo_extra_not_local() -> None:
    assert re.search(r"^ARG EXTRAS=nemo$", DOCKERFILE, flags=re.MULTILINE)
    (install,) = [r for r in instructions("RUN") if 'pip install ".[' in r]
    assert install.endswith('pip install ".[${EXTRAS}]"')  # the default resolves to .[nemo]
    assert not [r for r in instructions("RUN") if "torch" in r or "local" in r]


def test_serves_on_all_interfaces() -> None:
    assert 'CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]' in DOCKERFILE


def test_dockerignore_sends_only_what_the_build_needs() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    assert lines[lines.index("**")] == "**"
    allowed = {line[1:] for line in lines if line.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "src/"}
    copied = {c.split()[0] for c in instructions("COPY") if not c.startswith("--from")}
    assert copied <= {"pyproject.toml", "src"}
