"""The demo command's pure helpers: the data-dir guard, the configuration, the rendering."""

from __future__ import annotations

from pathlib import Path

import pytest

from flywheel.cli.demo import (
    MARKER,
    demo_job_config,
    fmt_score,
    prepare_data_dir,
    recommendation_text,
    worker_environment,
)
from flywheel.errors import ConfigError


def test_a_previous_demo_dir_is_wiped_and_any_other_dir_is_refused(tmp_path: Path) -> None:
    demo = prepare_data_dir(tmp_path / "demo")
    (demo / "state.db").write_text("old")
    again = prepare_data_dir(demo)
    assert sorted(p.name for p in again.iterdir()) == [MARKER]

    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "state.db").write_text("keep me")
    with pytest.raises(ConfigError, match="not created by `flywheel demo`"):
        prepare_data_dir(precious)
    assert (precious / "state.db").read_text() == "keep me"


def test_the_demo_config_is_the_shipped_one_with_extras_merged(tmp_path: Path) -> None:
    extra = tmp_path / "extra.yaml"
    extra.write_text("training_config:\n  max_steps: 3\n")
    config = demo_job_config(extra)
    assert config["training_config"]["max_steps"] == 3
    assert config["training_config"]["epochs"] == demo_job_config(None)["training_config"]["epochs"]


def test_the_worker_never_sees_service_urls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://elsewhere:6379/0")
    monkeypatch.setenv("MONGODB_URL", "mongodb://elsewhere")
    monkeypatch.setenv("FLYWHEEL_PLATFORM", "somewhere:else")
    monkeypatch.setenv("FLYWHEEL_TORCH_THREADS", "3")
    env = worker_environment(tmp_path, tmp_path / "c.yaml")
    assert "REDIS_URL" not in env
    assert "MONGODB_URL" not in env
    assert "FLYWHEEL_PLATFORM" not in env
    assert env["FLYWHEEL_DATA_DIR"] == str(tmp_path)
    assert env["FLYWHEEL_AUTH_ENABLED"] == "false"
    assert env["FLYWHEEL_TORCH_THREADS"] == "3"


def test_scores_and_recommendations_read_plainly() -> None:
    assert fmt_score({"value": 0.8125, "ci_low": 0.7, "ci_high": 0.91, "n": 24}) == (
        "0.812 [0.70, 0.91]"
    )
    assert fmt_score(None) == "—"
    best = {"name": "smollm2/customized", "cost_per_1k_requests": 0.0123}
    text = recommendation_text(
        {"recommendation": {"best": best, "reference_cost_per_1k_requests": 0.9}}
    )
    assert text.startswith("recommended: smollm2/customized at $0.0123")
    assert "recommended: m/customized" in recommendation_text(
        {"recommendation": {"best": "m/customized", "metric": "ndcg@10"}}
    )
    rejected = {
        "ranked": [],
        "rejected": [
            {"name": "m/base", "failing_tools": ["a", "b"], "reasons": ["far", "far"]},
            {"name": "m/customized", "failing_tools": ["a"], "reasons": ["close"]},
        ],
    }
    text = recommendation_text({"recommendation": rejected})
    assert text.startswith("no candidate reached parity")
    assert "closest: m/customized; first gap: close" in text


def test_the_live_view_and_the_results_render() -> None:
    import io

    from rich.console import Console

    from flywheel.cli.demo import progress_line, progress_view, results_table

    score = {"value": 0.5, "ci_low": 0.3, "ci_high": 0.7, "n": 24}
    job = {
        "id": "job_1",
        "job_type": "llm_job",
        "status": "running",
        "stage": "evaluating",
        "progress": 52.0,
        "candidates": [
            {
                "name": "smollm2",
                "status": "active",
                "deployment": {"reason": None},
                "evaluations": [
                    {
                        "eval_type": "base",
                        "status": "completed",
                        "progress": 100.0,
                        "scores": {
                            "function_name_accuracy": score,
                            "function_name_and_args_accuracy": score,
                            "latency": {"p50_ms": 900.0, "p95_ms": 1500.0},
                            "cost": {"cost_per_1k_requests": 0.0123},
                            "gate": {"passed": False},
                        },
                    },
                    {"eval_type": "customized", "status": "waiting", "progress": None},
                ],
                "customization": {
                    "status": "running",
                    "progress": 22.0,
                    "details": {"step": 18, "total_steps": 80, "loss": 0.493},
                },
            }
        ],
    }
    line = progress_line(job)
    assert "step 18/80 loss 0.493" in line
    assert "base=completed" in line
    out = io.StringIO()
    console = Console(file=out, width=160)
    console.print(progress_view(job, 12.0))
    console.print(results_table(job))
    text = out.getvalue()
    assert "smollm2 / base" in text
    assert "0.500 [0.30, 0.70]" in text
    assert "900 / 1500" in text
    assert "0.0123" in text


def _render(table: object) -> str:
    import io

    from rich.console import Console

    out = io.StringIO()
    Console(file=out, width=160).print(table)
    return out.getvalue()


def _finished_job(job_type: str, judge: dict[str, object] | None) -> dict[str, object]:
    config: dict[str, object] = {"candidates": [{"name": "smollm2"}]}
    if judge is not None:
        config["llm_judge_config"] = judge
    score = {"value": 0.5, "ci_low": 0.3, "ci_high": 0.7, "n": 24}
    return {
        "id": "job_1",
        "job_type": job_type,
        "status": "completed",
        "config": config,
        "candidates": [
            {
                "name": "smollm2",
                "status": "completed",
                "error": None,
                "evaluations": [
                    {
                        "eval_type": "base",
                        "status": "completed",
                        "scores": {"function_name_accuracy": score, "recall@5": score},
                    }
                ],
            }
        ],
    }


NOTE = "judge: not configured (set llm_judge_config for judge scores)"
REMOTE_JUDGE = {"type": "remote", "url": "http://judge.test", "model_name": "j"}


@pytest.mark.parametrize(
    ("job_type", "judge", "noted"),
    [
        ("llm_job", None, True),  # the snapshot omits the section: the default, no judge
        ("llm_job", {"type": "none"}, True),
        ("llm_job", REMOTE_JUDGE, False),
        ("llm_job", {"type": "local", "hf_model": "judge-dir"}, False),
        ("embedding_job", {"type": "none"}, False),  # no judge metric to miss
    ],
)
def test_the_results_tables_say_when_no_judge_is_configured(
    job_type: str, judge: dict[str, object] | None, noted: bool
) -> None:
    from flywheel.cli.demo import results_table as demo_table
    from flywheel.cli.jobs import results_table as jobs_table

    job = _finished_job(job_type, judge)
    for table in (demo_table(job), jobs_table(job)):
        assert (NOTE in _render(table)) is noted


def test_a_job_without_a_config_snapshot_gets_no_judge_guess() -> None:
    from flywheel.cli.jobs import judge_note

    assert judge_note({"job_type": "llm_job"}) is None
    assert judge_note({"job_type": "llm_job", "config": {}}) == NOTE
