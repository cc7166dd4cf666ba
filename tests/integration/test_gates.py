"""Gates of a model asset end to end: evaluated in the step job on real files and a real SQLite database,
recorded with the materialization under ``cairn.gates``, compared with the champion the ``aliases`` table
names, part of the model's code version, and never failing the step."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

import cairn
from cairn.config import load_settings
from cairn.engine.api import open_stores
from cairn.errors import DefinitionError
from tests.conftest import ProjectFactory, set_pipeline

MODEL = """
from cairn import Context, GateContext, GateResult, asset, gate, latency_budget, metric_threshold, no_regression
from cairn import segment_regression, size_budget


@asset
def test_window() -> list[float]:
    return [0.1, 0.4, 0.6, 0.9]


@asset(kind="model", params={"w": 3.0})
def model(ctx: Context, test_window: list[float]) -> dict:
    ctx.log_metric("auc", accuracy({"w": ctx.params["w"]}, test_window))
    ctx.log_metric("auc:new_users", ctx.params["w"] / 10)
    return {"w": ctx.params["w"]}


def accuracy(model: dict, rows: list[float]) -> float:
    return sum(1 for x in rows if x * model["w"] > 1) / len(rows)


def on_test_window(model: dict, ctx: GateContext) -> dict:
    return {"acc": accuracy(model, ctx.inputs["test_window"])}


class Scorer:
    def __init__(self, model: dict) -> None:
        self.w = model["w"]

    def predict(self, batch: list[float]) -> list[float]:
        return [self.w * x for x in batch]


gates = [
    gate("model")(metric_threshold("auc", min=0.5)),
    gate("model")(no_regression("auc")),
    gate("model")(no_regression("acc", evaluate=on_test_window)),
    gate("model", blocking=False)(segment_regression("auc", tolerance=0.05)),
    gate("model")(size_budget(10)),
    gate("model")(latency_budget(1000, batch="test_window", load=Scorer)),
]


@gate("model")
def sees_its_inputs(candidate: dict, ctx: GateContext) -> GateResult:
    return GateResult(ctx.inputs["test_window"][0] == 0.1, {"w": candidate["w"]}, f"params {dict(ctx.params)}")


@gate("model", blocking=False)
def crashes(candidate: dict, ctx: GateContext) -> bool:
    raise RuntimeError("the scoring service is down")
"""


def gates_of(root: Path, name: str = "model") -> dict[str, dict[str, Any]]:
    """The recorded gate results of the latest materialization of `name`, by gate name."""
    with open_stores(load_settings(root)) as stores:
        mat = stores.meta.latest_materialization(name)
    assert mat is not None
    return {record["gate"]: record for record in mat.metadata["cairn.gates"]}


def crown(root: Path, name: str = "model") -> None:
    """Point the ``champion`` alias of `name` at its latest materialization (as `cairn models promote` does)."""
    with open_stores(load_settings(root)) as stores:
        mat = stores.meta.latest_materialization(name)
    assert mat is not None
    with closing(sqlite3.connect(root / ".cairn" / "cairn.db")) as conn, conn:
        conn.execute(
            "INSERT INTO aliases (alias, asset, mat_id, snapshot, moved_at, moved_by) VALUES (?, ?, ?, NULL, 0, ?) "
            "ON CONFLICT (alias, asset) DO UPDATE SET mat_id = excluded.mat_id",
            ("champion", name, mat.id, "test"),
        )


def test_gate_results_are_recorded_with_the_materialization_and_a_failure_does_not_fail_the_step(
    make_project: ProjectFactory,
) -> None:
    root = make_project(MODEL)
    result = cairn.materialize(project=root)
    assert result.ok and result["model"].status == "executed"
    assert cairn.load("model", project=root) == {"w": 3.0}
    recorded = gates_of(root)
    assert list(recorded) == [
        "metric_threshold:auc",
        "no_regression:auc",
        "no_regression:acc",
        "segment_regression:auc",
        "size_budget",
        "latency_budget",
        "sees_its_inputs",
        "crashes",
    ]
    assert all(set(r) == {"gate", "passed", "blocking", "metrics", "detail"} for r in recorded.values())
    assert recorded["metric_threshold:auc"] == {
        "gate": "metric_threshold:auc",
        "passed": True,
        "blocking": True,
        "metrics": {"auc": 0.75},
        "detail": "auc = 0.75 meets >= 0.5",
    }
    assert recorded["no_regression:auc"]["passed"] and recorded["no_regression:auc"]["detail"] == (
        "no champion to compare with"
    )
    assert recorded["segment_regression:auc"]["blocking"] is False
    assert recorded["size_budget"]["metrics"] == {"bytes": 9.0, "max_bytes": 10.0}  # {"w":3.0}: canonical JSON
    assert recorded["latency_budget"]["passed"] and recorded["latency_budget"]["metrics"]["batch_rows"] == 4.0
    assert recorded["sees_its_inputs"] == {
        "gate": "sees_its_inputs",
        "passed": True,
        "blocking": True,
        "metrics": {"w": 3.0},
        "detail": "params {'w': 3.0}",
    }
    crashed = recorded["crashes"]
    assert not crashed["passed"] and crashed["detail"] == "the gate raised RuntimeError: the scoring service is down"
    with open_stores(load_settings(root)) as stores:
        mat = stores.meta.latest_materialization("model")
        assert mat is not None and "gates_s" in mat.metadata["cairn.timings"]
        data = stores.meta.latest_materialization("test_window")
        assert data is not None and "cairn.gates" not in data.metadata


def test_no_regression_compares_with_the_champion_named_by_the_aliases_table(make_project: ProjectFactory) -> None:
    root = make_project(MODEL)
    cairn.materialize(project=root)
    crown(root)
    worse = cairn.materialize(project=root, params={"model": {"w": 2.0}})
    assert worse.ok and worse["model"].status == "executed", "a failed blocking gate does not fail training"
    recorded = gates_of(root)
    logged = recorded["no_regression:auc"]
    assert not logged["passed"]
    assert logged["metrics"] == {"auc": 0.5, "champion": 0.75, "delta": -0.25}
    evaluated = recorded["no_regression:acc"]  # the champion scored on this run's test window
    assert not evaluated["passed"] and "on the same inputs" in evaluated["detail"]
    assert evaluated["metrics"] == {"acc": 0.5, "champion": 0.75, "delta": -0.25}
    segment = recorded["segment_regression:auc"]
    assert not segment["passed"] and "new_users 0.2 vs 0.3" in segment["detail"]

    better = cairn.materialize(project=root, params={"model": {"w": 4.0}})
    assert better["model"].status == "executed"
    assert gates_of(root)["no_regression:acc"]["metrics"] == {"acc": 0.75, "champion": 0.75, "delta": 0.0}
    assert gates_of(root)["no_regression:auc"]["passed"]


def test_gates_run_in_a_worker_process_and_load_the_champion_there(make_project: ProjectFactory) -> None:
    root = make_project(MODEL, executor="process")
    assert cairn.materialize(project=root).ok
    crown(root)
    result = cairn.materialize(project=root, params={"model": {"w": 2.0}})
    assert result.ok
    assert gates_of(root)["no_regression:acc"]["metrics"]["champion"] == 0.75


def test_editing_a_gate_makes_the_model_stale_and_names_the_gate(make_project: ProjectFactory) -> None:
    root = make_project(MODEL)
    cairn.materialize(project=root)
    stricter = MODEL.replace('metric_threshold("auc", min=0.5)', 'metric_threshold("auc", min=0.8)')
    set_pipeline(root, stricter)
    result = cairn.materialize(project=root)
    assert result["test_window"].status == "cached"
    assert result["model"].status == "executed"
    assert result["model"].reason == "code changed: model → metric_threshold:auc"
    assert not gates_of(root)["metric_threshold:auc"]["passed"]
    set_pipeline(root, stricter.replace('ctx.inputs["test_window"][0] == 0.1', 'ctx.inputs["test_window"][0] > 0'))
    assert cairn.materialize(project=root)["model"].reason == "code changed: model → sees_its_inputs"


FILES_MODEL = """
from cairn import Context, Files, GateContext, asset, gate, size_budget


@asset(kind="model")
def model(ctx: Context) -> Files:
    folder = ctx.workdir / "model"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"x" * 3000)
    (folder / "card.json").write_text("{}")
    return Files(folder)


@gate("model")
def has_weights(candidate, ctx: GateContext) -> bool:
    return (candidate / "weights.bin").stat().st_size == 3000


checks = [gate("model")(size_budget(2500)), gate("model", name="roomy")(size_budget(4000))]
"""


def test_a_files_model_is_gated_as_a_folder_weighing_all_its_files(make_project: ProjectFactory) -> None:
    root = make_project(FILES_MODEL)
    assert cairn.materialize(project=root).ok
    recorded = gates_of(root)
    assert recorded["has_weights"]["passed"]
    assert recorded["size_budget"]["metrics"]["bytes"] == 3002.0 and not recorded["size_budget"]["passed"]
    assert recorded["roomy"]["passed"]


@pytest.mark.parametrize(
    ("pipeline", "message"),
    [
        (
            """
from cairn import asset, gate, size_budget

@asset(kind="model")
def model() -> dict:
    return {}

budget = gate("modle")(size_budget(10))
""",
            r"gate 'size_budget' is defined for asset 'modle', which does not exist\. Did you mean 'model'\?",
        ),
        (
            """
from cairn import asset, gate, metric_threshold

@asset
def features() -> dict:
    return {}

floor = gate("features")(metric_threshold("auc", min=0.5))
""",
            r"asset 'features', which is kind='data'; gates validate model assets: declare it with "
            r"@asset\(kind='model'\), or test a data asset with @check\('features'\)",
        ),
    ],
)
def test_a_gate_naming_an_unknown_or_a_data_asset_is_a_definition_error(
    make_project: ProjectFactory, pipeline: str, message: str
) -> None:
    root = make_project(pipeline)
    with pytest.raises(DefinitionError, match=message):
        cairn.materialize(project=root)
