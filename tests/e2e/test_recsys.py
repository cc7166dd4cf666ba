"""The recsys example (examples/recsys): its building blocks, and the whole pipeline through the command line.

The fast tests call the example's own functions (simulator, labels, metrics, calibration) on small inputs.
The slow ones run the pipeline at a small scale through `cairn run --json` in a copy of the example: a first
run executes every step and learns the synthetic signal, a second run is all cached, and a param change
re-executes exactly the steps downstream of it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import cairn

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "recsys"
SMALL_SCALE = 0.2  # 400 users, ~63,000 events: the same 347 steps as the default, a fifth of the data
DAYS = [(datetime(2026, 5, 4) + timedelta(days=i)).strftime("%Y-%m-%d") for i in range(42)]
PER_DAY = ("traffic", "raw_events", "events", "labels", "user_activity", "item_activity")
FEATURES = ("user_features", "item_features")
TRAINING = ("training_dataset", "split", "ranker", "calibration", "evaluation", "gates", "model")
EVERY_STEP = {"world", "users", "items", "dataset_spec", *TRAINING} | {
    f"{asset}@{day}" for asset in PER_DAY + FEATURES for day in DAYS
}


def small_copy(root: Path, scale: float = SMALL_SCALE) -> Path:
    """A copy of the example (without local state) whose world is `scale` times the default size."""
    target = root / "examples" / "recsys"
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns(".cairn", "__pycache__"))
    config = target / "cairn.toml"
    default = "world = { scale = 1.0, seed = 7 }"
    text = config.read_text(encoding="utf-8")
    assert default in text, "the example's cairn.toml no longer sets the world's scale where this test expects it"
    config.write_text(text.replace(default, f"world = {{ scale = {scale}, seed = 7 }}"), encoding="utf-8")
    return target


def cairn_cli(project: Path, *args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    done = subprocess.run(
        [sys.executable, "-m", "cairn.cli.main", "-C", str(project), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert done.returncode == expect, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def run_json(project: Path, *args: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(cairn_cli(project, "run", "--json", *args).stdout)
    return result


def steps_with(result: dict[str, Any], status: str) -> set[str]:
    return {
        f"{s['asset']}@{s['partition']}" if s["partition"] else s["asset"]
        for s in result["steps"]
        if s["status"] == status
    }


# ---- the example's building blocks ------------------------------------------------------------------------


@pytest.fixture
def example() -> Iterator[dict[str, ModuleType]]:
    """The example's modules, imported from its folder and forgotten afterwards (other projects reuse the name)."""
    import importlib

    for name in [m for m in sys.modules if m == "pipeline" or m.startswith("pipeline.")]:
        del sys.modules[name]  # another test project's pipeline.py, imported earlier in this process
    sys.path.insert(0, str(EXAMPLE))
    try:
        yield {
            name: importlib.import_module(f"pipeline.{name}")
            for name in ("simulation", "labels", "metrics", "training")
        }
    finally:
        sys.path.remove(str(EXAMPLE))
        for name in [m for m in sys.modules if m == "pipeline" or m.startswith("pipeline.")]:
            del sys.modules[name]


def test_the_simulated_world_is_a_function_of_its_seed(example: dict[str, ModuleType]) -> None:
    import pandas as pd

    sim = example["simulation"]
    first, end = datetime(2026, 5, 4, tzinfo=UTC), datetime(2026, 6, 15, tzinfo=UTC)

    def day(seed: int) -> pd.DataFrame:
        users, items = sim.make_users(seed, 300, first, end), sim.make_items(seed, 80)
        return sim.simulate_day(seed, users, items, 5, first)

    pd.testing.assert_frame_equal(day(7), day(7))
    assert not day(7).equals(day(8))
    shown = day(7)
    clicked = shown["click_us"] > 0
    assert 0.02 < clicked.mean() < 0.3
    assert (shown.loc[clicked, "click_us"] > shown.loc[clicked, "shown_us"]).all()
    assert (shown.loc[shown["purchase_us"] > 0, "click_us"] > 0).all(), "a purchase always follows a click"
    with pytest.raises(ValueError, match="scale must be a positive number"):
        sim.world_sizes(0)


def test_labels_are_written_only_once_mature(example: dict[str, ModuleType]) -> None:
    """Partition 2026-05-20 labels the impressions of 2026-05-13, whose 7-day purchase windows closed that day;
    an impression of 2026-05-14 is left for the next partition, not labelled 'no purchase'."""
    import pandas as pd

    from cairn.engine.context import Checkpoint, Context

    def at(text: str) -> pd.Timestamp:
        return pd.Timestamp(text, tz="UTC")

    rows = [  # event type, impression id, time
        ("impression", 1, "2026-05-13 10:00"),
        ("click", 1, "2026-05-13 10:10"),  # 10 minutes later: a click
        ("purchase", 1, "2026-05-19 09:00"),  # 6 days later: a purchase
        ("impression", 2, "2026-05-13 12:00"),
        ("click", 2, "2026-05-13 12:45"),  # 45 minutes later: too late for the click label
        ("purchase", 2, "2026-05-20 13:00"),  # 7 days and an hour later: too late for the purchase label
        ("impression", 3, "2026-05-14 08:00"),  # its purchase window is still open at the cut-off
    ]
    log = pd.DataFrame(
        {
            "event_id": range(len(rows)),
            "event_type": [r[0] for r in rows],
            "impression_id": [r[1] for r in rows],
            "ts": [at(r[2]) for r in rows],
        }
    ).assign(session_id=1, user_id=1, item_id=10_001, category=0, position=0)
    window = {day: log[log["ts"].dt.strftime("%Y-%m-%d") == day] for day in [f"2026-05-{d}" for d in range(13, 21)]}

    def context(day: str) -> Context:
        start = datetime.fromisoformat(day).replace(tzinfo=UTC)
        return Context(
            asset="labels",
            partition=day,
            params={"click_window_min": 30},
            seed=0,
            run_id="test",
            attempt=1,
            workdir=Path("unused"),
            checkpoint=Checkpoint(Path("unused")),
            partition_window=(start, start + timedelta(days=1)),
        )

    nothing_mature = example["labels"].labels.fn(context("2026-05-19"), window)
    assert nothing_mature.empty
    assert str(nothing_mature["click_ts"].dtype) == str(log["ts"].dtype)
    ctx = context("2026-05-20")
    labels = example["labels"].labels.fn(ctx, window).set_index("impression_id")
    assert list(labels.index) == [1, 2]
    assert labels["click"].tolist() == [1, 0]
    assert labels["purchase"].tolist() == [1, 0]
    assert (labels["label_cutoff"] == at("2026-05-21")).all()
    assert ctx.metadata["maturity_cutoff"].startswith("2026-05-21")
    assert example["labels"].labels_are_mature.fn(labels.reset_index()).passed


def test_ndcg_agrees_with_scikit_learn_on_binary_relevance(example: dict[str, ModuleType]) -> None:
    import numpy as np
    import pandas as pd
    from sklearn.metrics import ndcg_score

    rng = np.random.default_rng(3)
    sessions, length = 200, 10
    relevance = (rng.random((sessions, length)) < 0.15).astype(int)
    relevance[:, 0] |= relevance.sum(axis=1) == 0  # every session has a relevant item
    scores = rng.random((sessions, length))
    frame = pd.DataFrame(
        {
            "session_id": np.repeat(np.arange(sessions), length),
            "impression_id": np.arange(sessions * length),
            "score": scores.ravel(),
            "relevance": relevance.ravel(),
        }
    )
    ours = example["metrics"].ndcg_at_k(frame, "score", "relevance", 10)
    assert ours == pytest.approx(ndcg_score(relevance, scores, k=10), abs=1e-12)


def test_platt_scaling_recovers_known_parameters(example: dict[str, ModuleType]) -> None:
    import numpy as np

    rng = np.random.default_rng(5)
    z = rng.normal(0, 1.5, 50_000)
    y = (rng.random(z.size) < 1 / (1 + np.exp(-(2.0 * z - 1.0)))).astype(float)
    a, b = example["training"].platt(z, y)
    assert a == pytest.approx(2.0, abs=0.08)
    assert b == pytest.approx(-1.0, abs=0.08)


# ---- the whole pipeline through the command line --------------------------------------------------------


@pytest.mark.slow
def test_the_pipeline_learns_caches_and_reruns_exactly_what_a_change_touches(tmp_path: Path) -> None:
    project = small_copy(tmp_path)

    first = run_json(project)
    assert first["status"] == "succeeded"
    assert steps_with(first, "executed") == EVERY_STEP

    evaluation = cairn.load("evaluation", project=project)
    assert evaluation["test"]["auc"] > 0.6, evaluation
    assert evaluation["test"]["auc"] > evaluation["baseline"]["auc"], "the model must beat item popularity alone"
    assert evaluation["segments"]["new_users"]["rows"] > 0
    assert evaluation["segments"]["returning_users"]["rows"] > 0
    gates = cairn.load("gates", project=project)
    assert gates["critical_passed"], gates
    card = json.loads((cairn.load("model", project=project) / "model_card.json").read_text(encoding="utf-8"))
    model_bytes = (cairn.load("model", project=project) / "model.pkl").read_bytes()
    import hashlib

    assert hashlib.sha256(model_bytes).hexdigest() == card["artifact"]["sha256"]
    promotion = recorded_gates(project)
    assert set(promotion) == PROMOTION_GATES
    assert all(g["passed"] and g["blocking"] for g in promotion.values()), promotion
    assert promotion["no_regression:auc"]["detail"] == "no champion to compare with"
    assert promotion["latency_budget"]["metrics"]["batch_rows"] == 1000

    _assert_no_leakage_and_mature_labels(project)

    second = run_json(project)
    assert steps_with(second, "cached") == EVERY_STEP

    window = run_json(project, "--set", "user_features.window_days=14")
    assert steps_with(window, "executed") == {f"user_features@{day}" for day in DAYS} | set(TRAINING)

    crown_latest_model(project)
    seed = run_json(project, "--set", "ranker.seed=18")
    assert steps_with(seed, "executed") == {"ranker", "calibration", "evaluation", "gates", "model"}
    against = recorded_gates(project)
    for name in ("no_regression:auc", "no_regression:ndcg_at_10"):  # the champion scored on the same test window
        assert "vs champion" in against[name]["detail"] and "on the same inputs" in against[name]["detail"]
        assert set(against[name]["metrics"]) == {name.split(":")[1], "champion", "delta"}
    assert "delta:new_users" in against["segment_regression:auc"]["metrics"]

    assert steps_with(run_json(project), "cached") == EVERY_STEP


PROMOTION_GATES = {
    "metric_threshold:auc_lift_over_popularity",
    "metric_threshold:ndcg_at_10_lift_over_popularity",
    "no_regression:auc",
    "no_regression:ndcg_at_10",
    "segment_regression:auc",
    "size_budget",
    "latency_budget",
}


def recorded_gates(project: Path) -> dict[str, dict[str, Any]]:
    """The promotion gate results recorded with the latest model materialization, by gate name."""
    from cairn.config import load_settings
    from cairn.engine.api import open_stores

    with open_stores(load_settings(project)) as stores:
        mat = stores.meta.latest_materialization("model")
    assert mat is not None
    return {g["gate"]: g for g in mat.metadata["cairn.gates"]}


def crown_latest_model(project: Path) -> None:
    """Make the latest model the champion, directly in the aliases table (what a reviewed promotion does)."""
    import sqlite3
    from contextlib import closing

    from cairn.config import load_settings
    from cairn.engine.api import open_stores

    with open_stores(load_settings(project)) as stores:
        mat = stores.meta.latest_materialization("model")
    assert mat is not None
    with closing(sqlite3.connect(project / ".cairn" / "cairn.db")) as conn, conn:
        conn.execute(
            "INSERT INTO aliases (alias, asset, mat_id, snapshot, moved_at, moved_by) "
            "VALUES ('champion', 'model', ?, NULL, 0, 'test')",
            (mat.id,),
        )


def _assert_no_leakage_and_mature_labels(project: Path) -> None:
    """The materialized dataset: every feature known before its impression, every label mature at its cut-off,
    nothing after the spec's window, negatives sampled in the train window only."""
    spec = cairn.load("dataset_spec", project=project)
    data = cairn.load("training_dataset", project=project)
    assert (data["user_feature_ts"].dropna() <= data.loc[data["user_feature_ts"].notna(), "impression_ts"]).all()
    assert (data["item_feature_ts"].dropna() <= data.loc[data["item_feature_ts"].notna(), "impression_ts"]).all()
    assert (data["impression_ts"] + timedelta(days=7) <= data["label_cutoff"]).all()
    assert data["impression_ts"].max() < datetime.fromisoformat(spec["examples"]["end"])
    train_end = datetime.fromisoformat(spec["split"]["train_end"])
    assert (data.loc[data["impression_ts"] >= train_end, "weight"] == 1.0).all()
    assert (data.loc[(data["impression_ts"] < train_end) & (data["click"] == 0), "weight"] > 1.0).all()
