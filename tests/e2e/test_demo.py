"""``flywheel demo`` as users run it, on tiny models (``--extra-config`` swaps the candidates).

The real demo (SmolLM2-135M, all-MiniLM-L6-v2, 600 records) takes minutes on a CPU and is run
by hand (``make demo``); this checks the command's whole path in well under a minute each.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import yaml

from tests.e2e.conftest import tiny_job_config, worker_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.mark.parametrize("job_type", ["llm_job", "embedding_job"])
def test_demo_runs_a_whole_job_and_writes_the_results(
    tmp_path: Path, tiny_models: tuple[Path, Path], job_type: str
) -> None:
    overlay = tiny_job_config(*tiny_models)
    # The demo's prompts are long for a 400-token vocabulary: room for them and the ICL shots.
    overlay["candidates"][0]["context_length"] = 8192
    overlay["icl_config"] = {"max_context_length": 8192, "reserved_tokens": 128, "max_examples": 1}
    overlay_path = tmp_path / "overlay.yaml"
    overlay_path.write_text(yaml.safe_dump(overlay))
    data_dir = tmp_path / "demo"
    results = tmp_path / "results.json"
    # The demo forces its own data dir and config on the worker; the rest of this env is kept.
    env = worker_env(tmp_path / "ignored", tmp_path / "ignored.yaml")
    env["REDIS_URL"] = "redis://127.0.0.1:1/0"  # must be ignored: the demo is embedded only

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", "from flywheel.cli import main; main()", "demo",
             "--job-type", job_type, "--records", "120", "--data-dir", str(data_dir),
             "--extra-config", str(overlay_path), "--results", str(results)],
            env=env, capture_output=True, text=True, timeout=240, check=False,
        )  # fmt: skip

    done = run()
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    job = orjson.loads(results.read_bytes())
    assert job["status"] == "completed"
    assert job["job_type"] == job_type
    (candidate,) = job["candidates"]
    variants = {e["eval_type"] for e in candidate["evaluations"]}
    if job_type == "llm_job":
        assert candidate["name"] == "tiny-llama"
        assert variants == {"base", "icl", "customized"}
        assert "name+args acc." in done.stdout
    else:
        assert candidate["name"] == "tiny-bert"
        assert variants == {"base", "customized"}
        assert "ndcg@10" in done.stdout
    assert "Results (95% bootstrap CIs)" in done.stdout
    assert "job completed in" in done.stdout
    assert (data_dir / ".flywheel-demo").is_file()
    assert (data_dir / "worker.log").is_file()
