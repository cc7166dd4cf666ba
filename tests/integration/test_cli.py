"""The command line in a subprocess: output, --json shapes, exit codes and messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ProjectFactory, set_pipeline

PIPELINE = """
from cairn import Context, asset

@asset(params={"n": 4}, tags={"tier": "raw"})
def numbers(ctx: Context) -> list[int]:
    ctx.log.info("making %d numbers", ctx.params["n"])
    return list(range(ctx.params["n"]))

@asset(params={"factor": 2}, tags={"tier": "gold"})
def scaled(ctx: Context, numbers: list[int]) -> list[int]:
    return [n * ctx.params["factor"] for n in numbers]
"""


def cairn(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "cairn.cli.main", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120
    )


@pytest.fixture
def project(make_project: ProjectFactory) -> Path:
    return make_project(PIPELINE, executor="process")


def test_init_scaffolds_a_project_that_runs(tmp_path: Path) -> None:
    created = cairn("init", str(tmp_path / "demo"))
    assert created.returncode == 0, created.stderr
    assert (tmp_path / "demo" / "cairn.toml").exists() and (tmp_path / "demo" / "pipeline.py").exists()
    run = cairn("-C", str(tmp_path / "demo"), "run", "--json")
    assert run.returncode == 0, run.stderr
    assert [s["status"] for s in json.loads(run.stdout)["steps"]] == ["executed", "executed"]
    again = cairn("init", str(tmp_path / "demo"))
    assert again.returncode == 2 and "already exists; nothing was changed" in again.stderr


def test_run_json_shape_and_cached_rerun(project: Path) -> None:
    first = cairn("run", "-C", str(project), "--json")
    assert first.returncode == 0, first.stderr
    data = json.loads(first.stdout)
    assert set(data) == {"run_id", "status", "steps"} and data["status"] == "succeeded"
    step = data["steps"][0]
    assert set(step) >= {
        "asset",
        "partition",
        "status",
        "attempts",
        "cache_key",
        "data_version",
        "duration_s",
        "reason",
    }
    assert step["cache_key"].startswith("b3:") and step["data_version"].startswith("b3:")
    second = json.loads(cairn("run", "-C", str(project), "--json").stdout)
    assert [s["status"] for s in second["steps"]] == ["cached", "cached"]


def test_set_parses_toml_literals_and_why_explains(project: Path) -> None:
    cairn("run", "-C", str(project))
    changed = json.loads(cairn("run", "-C", str(project), "--set", "scaled.factor=3", "--json").stdout)
    assert [s["status"] for s in changed["steps"]] == ["cached", "executed"]
    assert changed["steps"][1]["reason"] == "param changed: factor 2→3"
    why = cairn("why", "scaled", "-C", str(project))
    assert why.returncode == 0 and "scaled is fresh" in why.stdout
    set_pipeline(project, PIPELINE.replace('"n": 4', '"n": 5'))
    stale = cairn("why", "scaled", "-C", str(project), "--set", "scaled.factor=3")
    assert "scaled is stale" in stale.stdout and "because numbers: param changed: n 4→5" in stale.stdout
    data = json.loads(cairn("why", "numbers", "-C", str(project), "--json").stdout)
    assert data["fresh"] is False and data["reason"] == "param changed: n 4→5"


def test_plan_runs_nothing(project: Path) -> None:
    out = cairn("plan", "-C", str(project), "--json")
    data = json.loads(out.stdout)
    assert data["to_run"] == 2 and [s["reason"] for s in data["steps"]] == [
        "never materialized",
        "upstream runs: numbers",
    ]
    assert not (project / ".cairn" / "artifacts" / "objects").exists()
    text = cairn("plan", "-C", str(project))
    assert "2 to run, 0 cached" in text.stdout


def test_status_runs_show_and_logs(project: Path) -> None:
    run_id = json.loads(cairn("run", "-C", str(project), "--json").stdout)["run_id"]
    status = json.loads(cairn("status", "-C", str(project), "--json").stdout)
    assert [(s["asset"], s["state"]) for s in status] == [("numbers", "fresh"), ("scaled", "fresh")]
    runs = json.loads(cairn("runs", "-C", str(project), "--json").stdout)
    assert runs[0]["run_id"] == run_id and runs[0]["steps"] == {"executed": 2}
    show = json.loads(cairn("show", run_id[:17], "-C", str(project), "--json").stdout)
    assert show["run_id"] == run_id and len(show["attempts"]) == 2 and show["environment"]["python"]
    logs = cairn("logs", "latest", "numbers", "-C", str(project))
    assert "making 4 numbers" in logs.stdout
    missing = cairn("show", "nope", "-C", str(project))
    assert missing.returncode == 2 and "no run id starts with 'nope'" in missing.stderr


def test_list_and_graph(project: Path) -> None:
    listed = json.loads(cairn("list", "-C", str(project), "--json").stdout)
    assert [(a["asset"], a["inputs"], a["tags"]) for a in listed] == [
        ("numbers", [], {"tier": "raw"}),
        ("scaled", ["numbers"], {"tier": "gold"}),
    ]
    assert cairn("graph", "-C", str(project), "--format", "mermaid").stdout.split() == [
        "graph",
        "LR",
        "numbers",
        "-->",
        "scaled",
    ]
    assert '"numbers" -> "scaled";' in cairn("graph", "-C", str(project), "--format", "dot").stdout
    bad = cairn("graph", "-C", str(project), "--format", "svg")
    assert bad.returncode == 2 and "--format 'svg' is not one of text, mermaid, dot" in bad.stderr


def test_failed_run_exits_1_and_prints_the_resume_command(make_project: ProjectFactory) -> None:
    root = make_project(PIPELINE.replace("return [n * ctx", "raise RuntimeError('boom')\n    return [n * ctx"))
    out = cairn("run", "scaled", "-C", str(root), "--set", "scaled.factor=5")
    assert out.returncode == 1
    assert "RuntimeError: boom" in out.stdout
    assert f"resume with: cairn run scaled -C {root} --set scaled.factor=5" in " ".join(out.stderr.split())


def test_definition_errors_exit_2_with_the_fix(make_project: ProjectFactory) -> None:
    root = make_project(
        "from cairn import asset\n\n@asset\ndef features(evnts):\n    return 1\n\n@asset\ndef events():\n    return 1\n"
    )
    out = cairn("run", "-C", str(root))
    assert out.returncode == 2
    assert "has input 'evnts' but no asset named 'evnts' is defined. Did you mean 'events'?" in " ".join(
        out.stderr.split()
    )
    assert "Traceback" not in out.stderr


def test_usage_errors_exit_2(project: Path, tmp_path: Path) -> None:
    unknown = cairn("run", "nubmers", "-C", str(project))
    assert unknown.returncode == 2 and "Did you mean 'numbers'" in unknown.stderr
    bad_set = cairn("run", "-C", str(project), "--set", "numbers")
    assert bad_set.returncode == 2 and "must look like asset.param=value" in bad_set.stderr
    no_project = cairn("status", "-C", str(tmp_path / "empty"))
    assert no_project.returncode == 2 and "no cairn.toml in" in no_project.stderr


def test_malformed_config_is_reported_with_its_location(make_project: ProjectFactory) -> None:
    root = make_project(PIPELINE, extra="[executor\n")
    out = cairn("list", "-C", str(root))
    assert out.returncode == 2 and "cairn.toml is not valid TOML" in out.stderr


def test_runs_show_metrics_as_columns_and_show_lists_them(make_project: ProjectFactory) -> None:
    root = make_project(
        PIPELINE.replace("    return list(range", '    ctx.log_metric("count", ctx.params["n"])\n    return list(range')
    )
    cairn("run", "-C", str(root))
    cairn("run", "-C", str(root), "--set", "numbers.n=6")
    runs = json.loads(cairn("runs", "-C", str(root), "--metric", "numbers.count", "--metric", "count", "--json").stdout)
    assert [r["metrics"] for r in runs] == [
        {"numbers.count": 6.0, "count": 6.0},
        {"numbers.count": 4.0, "count": 4.0},
    ]
    text = cairn("runs", "-C", str(root), "-m", "count").stdout
    assert "count" in text.splitlines()[0] and " 6 " in text
    show = json.loads(cairn("show", "latest", "-C", str(root), "--json").stdout)
    assert [s["metrics"] for s in show["steps"]] == [{"count": 6.0}, {}]


def test_show_splits_step_time_into_function_loading_checks_and_writing(make_project: ProjectFactory) -> None:
    root = make_project(PIPELINE.replace("    return [n *", "    import time\n    time.sleep(0.2)\n    return [n *"))
    cairn("run", "-C", str(root))
    show = json.loads(cairn("show", "latest", "-C", str(root), "--json").stdout)
    timings = {s["asset"]: s["timings"] for s in show["steps"]}
    assert set(timings["scaled"]) == {"inputs_s", "function_s", "checks_s", "output_s"}
    assert timings["scaled"]["function_s"] >= 0.2 > timings["numbers"]["function_s"]
    for step in show["steps"]:
        assert sum(step["timings"].values()) <= step["duration_s"] + 1e-5
    text = cairn("show", "latest", "-C", str(root)).stdout
    assert "time in 2 executed steps" in text and "asset functions" in text and "loading inputs" in text
    cairn("run", "-C", str(root))
    cached = json.loads(cairn("show", "latest", "-C", str(root), "--json").stdout)
    assert [s["timings"] for s in cached["steps"]] == [{}, {}]
    assert "executed steps" not in cairn("show", "latest", "-C", str(root)).stdout


def test_show_sums_up_the_metrics_of_a_partitioned_asset_in_one_line(make_project: ProjectFactory) -> None:
    root = make_project(
        """
from cairn import Context, asset, daily

@asset(partitions=daily("2026-06-01", end="2026-06-04"))
def counts(ctx: Context) -> int:
    n = int(ctx.partition[-2:])
    ctx.log_metric("rows", n * 10)
    return n

@asset
def total(ctx: Context) -> int:
    ctx.log_metric("answer", 42)
    return 42
"""
    )
    assert cairn("run", "-C", str(root)).returncode == 0
    text = cairn("show", "latest", "-C", str(root)).stdout
    assert "metrics of counts (3 partitions; min / median / max): rows 10 / 20 / 30" in text
    assert "metrics of total: answer=42" in text
    assert "counts@" not in text.split("time in")[-1]
