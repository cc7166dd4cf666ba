"""Parameter sweeps as tracked trials: `cairn run --sweep`, `cairn runs --sweep ID`, and `cairn.sweep`.

The pipeline's "model" scores each trial with a made-up validation and test metric whose best points differ,
so that the tests can tell "chosen on the validation metric, reported on the test metric" from "chosen on
the test metric". `train` appends each execution to ``trainings.log``, so the tests see what really ran.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import cairn
from cairn.engine.results import RunResult
from cairn.engine.sweep import Trial, parse_grid
from cairn.errors import UsageError
from tests.conftest import ProjectFactory
from tests.e2e.test_recsys import cairn_cli

PIPELINE = """
import os

from cairn import Context, asset

HERE = os.path.dirname(os.path.abspath(__file__))


@asset(params={"n": 40})
def data(ctx: Context) -> list[float]:
    return [i / ctx.params["n"] for i in range(ctx.params["n"])]


@asset(params={"learning_rate": 0.1, "max_depth": 4})
def train(ctx: Context, data: list[float]) -> dict:
    lr, depth = ctx.params["learning_rate"], ctx.params["max_depth"]
    with open(os.path.join(HERE, "trainings.log"), "a", encoding="utf-8") as log:
        log.write(f"{lr} {depth}\\n")
    if depth <= 0:
        raise ValueError("max_depth must be positive")
    # validation prefers lr=0.1 and deep trees; the test window prefers lr=0.1 and shallow ones
    val = 0.9 - abs(lr - 0.1) - abs(depth - 8) / 100
    test = 0.88 - abs(lr - 0.1) - abs(depth - 4) / 100
    ctx.log_metrics({"val_auc": round(val, 6), "test_auc": round(test, 6), "val_loss": round(1 - val, 6)})
    return {"lr": lr, "depth": depth, "rows": len(data)}
"""

GRID = ["--sweep", "train.learning_rate=0.03,0.1", "--sweep", "train.max_depth=4,8"]


def cli_json(project: Path, *args: str, expect: int = 0) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(cairn_cli(project, *args, "--json", expect=expect).stdout)
    return data


def trainings(root: Path) -> list[str]:
    log = root / "trainings.log"
    return log.read_text(encoding="utf-8").splitlines() if log.exists() else []


@pytest.fixture
def project(make_project: ProjectFactory) -> Path:
    return make_project(PIPELINE, executor="inline")


def test_a_2x2_sweep_records_four_trials_with_distinct_params_and_one_best(project: Path) -> None:
    """Each trial is a run whose args record the sweep id and the trial's params; the best is chosen on the
    validation metric (lr=0.1, depth 8) and reported on the held-out one (not the test metric's own best)."""
    sweep = cli_json(project, "run", "train", *GRID, "--metric", "val_auc", "--report", "test_auc")
    trials = sweep["trials"]
    assert len(trials) == 4 and sweep["sweep_id"].startswith("sw-")
    params = [tuple(t["params"].items()) for t in trials]
    assert len(set(params)) == 4
    assert {p for t in trials for p in t["params"]} == {"train.learning_rate", "train.max_depth"}
    assert [t["rank"] for t in trials] == [1, 2, 3, 4] and sum(t["rank"] == 1 for t in trials) == 1
    best = sweep["best"]
    assert best == trials[0]
    assert best["params"] == {"train.learning_rate": 0.1, "train.max_depth": 8}
    assert best["score"] == pytest.approx(0.9) and best["reported"] == pytest.approx(0.84)
    assert max(t["reported"] for t in trials) > best["reported"], "the best must not be chosen on the test metric"
    runs = {t["run_id"] for t in trials}
    assert len(runs) == 4
    for t in trials:
        recorded = cli_json(project, "show", t["run_id"])["args"]["sweep"]
        assert recorded["id"] == sweep["sweep_id"] and recorded["trial"] == t["params"]
        assert recorded["number"] == t["number"] and recorded["of"] == 4
        assert set(t["seeds"]) == {"train"} and isinstance(t["seeds"]["train"], int)
        assert set(t["inputs"]["train"]) == {"data"} and t["inputs"]["train"]["data"].startswith("b3:")
        assert set(t["metrics"]) >= {"train.val_auc", "train.test_auc"}
    assert len({t["dataset_version"] for t in trials}) == 1, "every trial trained on the same data version"
    assert len({t["seeds"]["train"] for t in trials}) == 1
    text = cairn_cli(project, "runs", "--sweep", sweep["sweep_id"], "--metric", "val_auc", "--report", "test_auc")
    assert f"sweep {sweep['sweep_id']}: 4 trials of train" in text.stdout
    assert f"best: trial {best['number']} (run {best['run_id']}) val_auc=0.9" in text.stdout
    assert "reported on the held-out test_auc=0.84" in text.stdout


def test_runs_sweep_ranks_the_trials_by_a_metric(project: Path) -> None:
    sweep = cli_json(project, "run", "train", *GRID)  # no --metric: recorded, not ranked
    assert sweep["best"] is None and [t["rank"] for t in sweep["trials"]] == [None] * 4
    assert [t["number"] for t in sweep["trials"]] == [1, 2, 3, 4]
    ranked = cli_json(project, "runs", "--sweep", sweep["sweep_id"], "--metric", "val_auc")
    scores = [t["score"] for t in ranked["trials"]]
    assert scores == sorted(scores, reverse=True) and [t["rank"] for t in ranked["trials"]] == [1, 2, 3, 4]
    assert ranked["best"]["params"] == {"train.learning_rate": 0.1, "train.max_depth": 8}
    losses = cli_json(project, "runs", "--sweep", "latest", "--metric", "train.val_loss", "--lower-is-better")
    assert losses["sweep_id"] == sweep["sweep_id"] and losses["higher_is_better"] is False
    assert [t["params"] for t in losses["trials"]] == [t["params"] for t in ranked["trials"]]
    prefix = sweep["sweep_id"][:-3]
    assert cli_json(project, "runs", "--sweep", prefix, "--metric", "val_auc")["trials"] == ranked["trials"]
    missing = cairn_cli(project, "runs", "--sweep", "sw-nope", expect=2)
    assert "no sweep 'sw-nope'" in missing.stderr and sweep["sweep_id"] in missing.stderr


def test_a_rerun_of_the_same_sweep_executes_nothing(project: Path) -> None:
    first = cairn.sweep("train", grid={"train.learning_rate": [0.03, 0.1], "train.max_depth": [4, 8]}, project=project)
    assert len(trainings(project)) == 4 and first.ok
    runs: list[RunResult] = []
    again = cairn.sweep(
        "train",
        grid={"train.learning_rate": [0.03, 0.1], "train.max_depth": [4, 8]},
        metric="val_auc",
        project=project,
        on_trial=lambda trial, result: runs.append(result),
    )
    assert len(trainings(project)) == 4, "a trial was computed again"
    assert len(runs) == 4 and all(r.count("executed") == 0 and r.count("cached") == 2 for r in runs)
    assert again.sweep_id != first.sweep_id
    assert [t.params for t in sorted(again.trials, key=lambda t: t.number)] == [t.params for t in first.trials]
    cli = cli_json(project, "run", "train", *GRID, "--metric", "val_auc")
    assert len(trainings(project)) == 4 and cli["best"]["params"] == again.best.params  # type: ignore[union-attr]


def test_a_failing_trial_is_listed_failed_and_not_ranked(project: Path) -> None:
    failed = cairn_cli(project, "run", "train", "--sweep", "train.max_depth=0,4,8", "--metric", "val_auc", expect=1)
    assert "1 of 3 trials did not succeed" in failed.stderr and "--sweep train.max_depth=0,4,8" in failed.stderr
    assert "trial 1 failed: train: ValueError: max_depth must be positive" in failed.stdout
    sweep = cli_json(project, "runs", "--sweep", "latest")
    assert sweep["metric"] == "val_auc", "the ranking metric recorded with the sweep is the default"
    by_number = {t["number"]: t for t in sweep["trials"]}
    assert by_number[1]["status"] == "failed" and by_number[1]["rank"] is None and by_number[1]["score"] is None
    assert "max_depth must be positive" in by_number[1]["error"]
    assert [t["number"] for t in sweep["trials"]] == [3, 2, 1], "ranked trials first, the failed one after"
    assert sweep["best"]["number"] == 3


def test_the_api_and_the_cli_agree(project: Path) -> None:
    seen: list[Trial] = []
    result = cairn.sweep(
        "train",
        grid={"train.learning_rate": [0.03, 0.1], "train.max_depth": [4, 8]},
        metric="val_auc",
        report="test_auc",
        project=project,
        params={"data": {"n": 30}},
        on_trial=lambda trial, run: seen.append(trial),
    )
    assert [t.number for t in seen] == [1, 2, 3, 4] and all(t.status == "succeeded" for t in seen)
    assert result.best is not None and result.best is result.ranking[0] and len(result.ranking) == 4
    assert result.best.params == {"train.learning_rate": 0.1, "train.max_depth": 8}
    shown = cli_json(project, "runs", "--sweep", result.sweep_id)
    assert shown == json.loads(json.dumps(result.to_dict()))
    assert cairn.load("data", project=project) == [i / 30 for i in range(30)], "--set params apply to every trial"
    cli = cli_json(project, "run", "train", *GRID, "--set", "data.n=30", "--metric", "val_auc", "--report", "test_auc")
    assert [(t["params"], t["score"], t["reported"]) for t in cli["trials"]] == [
        (t.params, t.score, t.reported) for t in result.trials
    ]
    assert cli["trials"][0]["dataset_version"] == result.trials[0].dataset_version


def test_sweep_values_are_toml_literals_and_mistakes_are_usage_errors(project: Path) -> None:
    grid = parse_grid(["m.sizes=[1, 2],[3,4]", 'm.name="a,b",plain', "m.on=true,false", "m.lr=0.03, 1e-2"])
    assert grid == {
        "m.sizes": [[1, 2], [3, 4]],
        "m.name": ["a,b", "plain"],
        "m.on": [True, False],
        "m.lr": [0.03, 0.01],
    }
    with pytest.raises(UsageError, match="must look like asset.param=v1,v2"):
        parse_grid(["learning_rate=0.1"])
    with pytest.raises(UsageError, match="is given twice"):
        parse_grid(["m.a=1", "m.a=2"])
    with pytest.raises(UsageError, match="has an empty value"):
        parse_grid(["m.a=1,,2"])
    with pytest.raises(UsageError, match="has no param 'learnin_rate'. Did you mean 'learning_rate'"):
        cairn.sweep("train", grid={"train.learnin_rate": [0.1]}, project=project)
    with pytest.raises(UsageError, match="lists 0.1 twice"):
        cairn.sweep("train", grid={"train.learning_rate": [0.1, 0.1]}, project=project)
    with pytest.raises(UsageError, match="does not run 'train'"):
        cairn.sweep("data", grid={"train.learning_rate": [0.1, 0.2]}, project=project)
    assert trainings(project) == [], "nothing runs when the grid is wrong"
    bad = cairn_cli(project, "run", "train", "--metric", "val_auc", expect=2)
    assert "add --sweep" in bad.stderr
