"""Validation gates of model assets as values: the decorator, how any outcome becomes a result, what is
recorded, and each ready-made gate (threshold, no regression, segment regression, size and latency budgets)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from cairn.core.asset import asset
from cairn.core.gates import (
    GateContext,
    GateDef,
    GateResult,
    check_gates,
    gate,
    gate_material,
    gate_record,
    latency_budget,
    metric_threshold,
    no_regression,
    run_gate,
    segment_metrics,
    segment_regression,
    size_budget,
)
from cairn.errors import DefinitionError


def context(champion: Any = None, champion_metrics: dict[str, float] | None = None, **options: Any) -> GateContext:
    """A gate context with a champion value (None: no champion) and its recorded metrics."""
    loader = (lambda: champion) if champion is not None else None
    return GateContext(champion=loader, champion_metrics=champion_metrics, champion_version="b3:champ", **options)


def model_fn() -> dict[str, float]:
    return {"w": 1.0}


def data_fn() -> list[int]:
    return [1]


# ---- definitions ------------------------------------------------------------------------------------------


def test_a_decorated_function_is_a_gate_named_after_it_and_still_callable() -> None:
    @gate("model", blocking=False)
    def beats_baseline(candidate: Any, ctx: GateContext) -> bool:
        return bool(ctx.metrics["auc"] > 0.5)

    assert isinstance(beats_baseline, GateDef)
    assert (beats_baseline.name, beats_baseline.asset, beats_baseline.blocking) == ("beats_baseline", "model", False)
    assert beats_baseline(None, GateContext(metrics={"auc": 0.7})) is True


def test_a_ready_made_gate_is_named_after_its_kind_and_metric_unless_named() -> None:
    assert gate("model")(metric_threshold("auc", min=0.7)).name == "metric_threshold:auc"
    assert gate("model")(no_regression("auc")).name == "no_regression:auc"
    assert gate("model")(segment_regression("auc")).name == "segment_regression:auc"
    assert gate("model")(size_budget(10)).name == "size_budget"
    assert gate("model")(latency_budget(5, batch="x")).name == "latency_budget"
    assert gate("model", name="auc_floor")(metric_threshold("auc", min=0.7)).name == "auc_floor"


def test_a_gate_may_name_its_model_by_definition_but_only_a_model() -> None:
    model = asset(kind="model", name="model")(model_fn)
    assert gate(model)(size_budget(1)).asset == "model"
    data = asset(name="features")(data_fn)
    with pytest.raises(DefinitionError, match=r"asset 'features', which is kind='data'.*@asset\(kind='model'\)"):
        gate(data)(size_budget(1))


def test_gates_of_a_data_asset_or_with_one_name_twice_are_definition_errors() -> None:
    data = asset(name="features")(data_fn)
    with pytest.raises(DefinitionError, match=r"gate 'size_budget' is defined for asset 'features'.*@check"):
        check_gates(data, [gate("features")(size_budget(1))])
    model = asset(kind="model", name="model")(model_fn)
    twice = [gate("model")(size_budget(1)), gate("model")(size_budget(2))]
    with pytest.raises(DefinitionError, match=r"more than one gate named 'size_budget'.*name="):
        check_gates(model, twice)
    check_gates(model, [twice[0], gate("model", name="tight")(size_budget(2))])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: metric_threshold("auc"), "needs min=, max= or both"),
        (lambda: metric_threshold("auc", min="0.7"), "bounds must be numbers"),
        (lambda: no_regression("auc", tolerance=-0.1), "tolerance=-0.1 must be a number, at least 0"),
        (lambda: segment_regression("auc", segments=[]), "name at least one segment"),
        (lambda: size_budget(-1), "whole number of bytes"),
        (lambda: latency_budget(0, batch="x"), "positive number of ms"),
        (lambda: latency_budget(5, batch=""), "name one of the model's inputs"),
        (lambda: latency_budget(5, batch="x", repeats=0), "at least 1"),
        (lambda: no_regression("auc", evaluate="score"), "evaluate= must be a function"),  # type: ignore[arg-type]
    ],
)
def test_a_misconfigured_ready_made_gate_is_a_definition_error(make: Callable[[], Any], message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        make()


# ---- running a gate and recording it ----------------------------------------------------------------------


def test_any_outcome_of_a_gate_function_becomes_a_result() -> None:
    def returns(value: Any) -> GateDef:
        return gate("model")(lambda candidate, ctx: value)

    ctx = GateContext()
    assert run_gate(returns(True), None, ctx) == GateResult(True)
    assert run_gate(returns(GateResult(False, {"auc": 0.1}, "low")), None, ctx) == GateResult(
        False, {"auc": 0.1}, "low"
    )
    wrong = run_gate(returns(0.9), None, ctx)
    assert not wrong.passed and "returned float; return a bool or a GateResult" in wrong.detail


def test_a_numpy_bool_counts_as_a_bool() -> None:
    np = pytest.importorskip("numpy")
    assert run_gate(gate("model")(lambda c, ctx: np.float64(1.0) > 0), None, GateContext()).passed


def test_a_gate_that_raises_has_failed_with_the_error_as_its_detail() -> None:
    @gate("model")
    def broken(candidate: Any, ctx: GateContext) -> bool:
        raise ValueError("no test rows")

    result = run_gate(broken, None, GateContext())
    assert not result.passed
    assert result.detail == "the gate raised ValueError: no test rows"


def test_a_gate_of_one_parameter_gets_the_candidate_alone() -> None:
    @gate("model")
    def small_enough(candidate: dict[str, int]) -> bool:
        return candidate["trees"] < 10

    assert run_gate(small_enough, {"trees": 3}, GateContext()).passed


def test_the_record_has_exactly_the_shape_the_registry_reads() -> None:
    definition = gate("model", blocking=False)(metric_threshold("auc", min=0.7))
    record = gate_record(definition, GateResult(False, {"auc": 0.5, "odd": math.nan}, "low"))
    assert record == {
        "gate": "metric_threshold:auc",
        "passed": False,
        "blocking": False,
        "metrics": {"auc": 0.5, "odd": None},
        "detail": "low",
    }


def test_a_ready_made_gates_settings_and_callables_are_part_of_its_code() -> None:
    def batch(ctx: GateContext) -> list[int]:
        return [1]

    low, high = gate("m")(metric_threshold("auc", min=0.7)), gate("m")(metric_threshold("auc", min=0.8))
    assert gate_material(low) != gate_material(high)
    assert gate_material(gate("m", blocking=False)(metric_threshold("auc", min=0.7))) != gate_material(low)
    settings, functions = gate_material(gate("m")(latency_budget(5, batch=batch)))
    assert functions == (batch,)
    assert any("test_a_ready_made_gates_settings" in str(s) and "batch" in str(s) for s in settings)

    def custom(candidate: Any, ctx: GateContext) -> bool:
        return True

    assert gate_material(gate("m")(custom)) == ([True], (custom,))


def test_the_champion_is_loaded_on_first_access_only() -> None:
    loads: list[int] = []

    def load() -> str:
        loads.append(1)
        return "champion model"

    ctx = GateContext(champion=load, champion_metrics={"auc": 0.7})
    assert ctx.has_champion and loads == []
    assert ctx.champion == ctx.champion == "champion model"
    assert loads == [1]
    none = GateContext(champion_metrics={"auc": 0.7})
    assert none.champion is None and not none.has_champion and none.champion_metrics == {}


# ---- metric_threshold --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "low", "high", "passed"),
    [
        (0.75, 0.7, None, True),
        (0.7, 0.7, None, True),
        (0.65, 0.7, None, False),
        (0.02, None, 0.03, True),
        (0.04, None, 0.03, False),
        (0.5, 0.4, 0.6, True),
        (0.7, 0.4, 0.6, False),
        (math.nan, 0.4, None, False),
        (math.nan, None, 0.6, False),
    ],
)
def test_metric_threshold_passes_within_its_bounds(
    value: float, low: float | None, high: float | None, passed: bool
) -> None:
    result = metric_threshold("auc", min=low, max=high)(None, GateContext(metrics={"auc": value}))
    assert result.passed is passed
    assert result.metrics == {"auc": value} or math.isnan(value)


def test_metric_threshold_on_a_metric_not_logged_fails_and_says_how_to_log_it() -> None:
    result = metric_threshold("val_auc", min=0.7)(None, GateContext(metrics={"auc": 0.9}))
    assert not result.passed
    assert "ctx.log_metric('val_auc', value)" in result.detail and "(logged: auc)" in result.detail


# ---- no_regression -----------------------------------------------------------------------------------------


def test_no_regression_passes_without_a_champion() -> None:
    result = no_regression("auc")(None, GateContext(metrics={"auc": 0.6}))
    assert result.passed and result.detail == "no champion to compare with"
    assert result.metrics == {"auc": 0.6}


@pytest.mark.parametrize(
    ("mine", "theirs", "tolerance", "higher", "passed"),
    [
        (0.80, 0.78, 0.0, True, True),
        (0.78, 0.78, 0.0, True, True),
        (0.77, 0.78, 0.0, True, False),
        (0.77, 0.78, 0.02, True, True),
        (0.30, 0.32, 0.0, False, True),  # a loss: lower is better
        (0.33, 0.32, 0.0, False, False),
        (0.33, 0.32, 0.05, False, True),
    ],
)
def test_no_regression_compares_with_the_champions_recorded_metric(
    mine: float, theirs: float, tolerance: float, higher: bool, passed: bool
) -> None:
    ctx = context("champion", {"auc": theirs}, metrics={"auc": mine})
    result = no_regression("auc", tolerance, higher_is_better=higher)(None, ctx)
    assert result.passed is passed, result.detail
    assert result.metrics == {"auc": mine, "champion": theirs, "delta": pytest.approx(mine - theirs)}


def test_no_regression_fails_closed_when_the_champion_lacks_the_metric() -> None:
    result = no_regression("ndcg")(None, context("champion", {"auc": 0.7}, metrics={"ndcg": 0.4}))
    assert not result.passed
    assert "champion (b3:champ) has no recorded ndcg" in result.detail and "evaluate=" in result.detail


def test_no_regression_with_evaluate_measures_candidate_and_champion_on_the_same_inputs() -> None:
    seen: list[tuple[Any, Any]] = []

    def accuracy(model: dict[str, float], ctx: GateContext) -> dict[str, float]:
        seen.append((model["w"], ctx.inputs["test"]))
        return {"acc": sum(1 for x in ctx.inputs["test"] if x * model["w"] > 1) / len(ctx.inputs["test"])}

    ctx = context({"w": 3.0}, {"acc": 0.0}, inputs={"test": [0.1, 0.5, 0.9]})  # the recorded 0.0 is not used
    result = no_regression("acc", evaluate=accuracy)({"w": 1.0}, ctx)
    assert seen == [(1.0, [0.1, 0.5, 0.9]), (3.0, [0.1, 0.5, 0.9])]
    assert not result.passed and "on the same inputs" in result.detail
    assert result.metrics == {"acc": 0.0, "champion": pytest.approx(2 / 3), "delta": pytest.approx(-2 / 3)}


def test_no_regression_with_evaluate_returning_one_number() -> None:
    ctx = context({"w": 1.0}, inputs={})
    assert no_regression("acc", evaluate=lambda model, ctx: model["w"])({"w": 2.0}, ctx).passed


def test_no_regression_does_not_load_the_champion_without_evaluate() -> None:
    def refuse() -> Any:
        raise AssertionError("the champion was loaded")

    ctx = GateContext(champion=refuse, champion_metrics={"auc": 0.7}, metrics={"auc": 0.8})
    assert no_regression("auc")(None, ctx).passed


# ---- segment_regression ------------------------------------------------------------------------------------


def test_segment_metrics_follow_the_metric_colon_segment_convention() -> None:
    metrics = {"auc": 0.8, "auc:new_users": 0.7, "auc:returning": 0.82, "ndcg:new_users": 0.3, "segment:eu": 0.6}
    assert segment_metrics(metrics, "auc") == {"new_users": 0.7, "returning": 0.82}
    assert segment_metrics(metrics, "segment") == {"eu": 0.6}


def test_segment_regression_passes_without_a_champion_once_segments_are_logged() -> None:
    result = segment_regression("auc")(None, GateContext(metrics={"auc:new_users": 0.7}))
    assert result.passed and result.metrics == {"auc:new_users": 0.7}
    missing = segment_regression("auc")(None, GateContext(metrics={"auc": 0.7}))
    assert not missing.passed and "ctx.log_metric('auc:new_users', value)" in missing.detail


def test_segment_regression_names_the_segment_that_regressed() -> None:
    champion = {"auc:new_users": 0.70, "auc:returning": 0.80}
    ctx = context("champion", champion, metrics={"auc:new_users": 0.64, "auc:returning": 0.83})
    result = segment_regression("auc", tolerance=0.02)(None, ctx)
    assert not result.passed
    assert "new_users 0.64 vs 0.7" in result.detail and "returning" not in result.detail
    assert result.metrics["delta:new_users"] == pytest.approx(-0.06)
    assert result.metrics["auc:returning"] == 0.83
    assert segment_regression("auc", tolerance=0.1)(None, ctx).passed


def test_segment_regression_on_chosen_segments_ignores_the_others() -> None:
    ctx = context(
        "champion",
        {"auc:new_users": 0.70, "auc:returning": 0.80},
        metrics={"auc:new_users": 0.71, "auc:returning": 0.50},
    )
    assert segment_regression("auc", segments=["new_users"])(None, ctx).passed
    lacking = segment_regression("auc", segments=["new_users", "eu"])(None, ctx)
    assert not lacking.passed and "auc:eu" in lacking.detail


def test_segment_regression_fails_when_a_champions_segment_disappears() -> None:
    ctx = context("champion", {"auc:new_users": 0.7, "auc:eu": 0.6}, metrics={"auc:new_users": 0.75})
    result = segment_regression("auc")(None, ctx)
    assert not result.passed and "the champion has segment metrics auc:eu" in result.detail


def test_segment_regression_lower_is_better_and_new_segments_are_noted() -> None:
    ctx = context("champion", {"loss:eu": 0.30}, metrics={"loss:eu": 0.28, "loss:us": 0.5})
    result = segment_regression("loss", higher_is_better=False)(None, ctx)
    assert result.passed and "not measured for the champion: us" in result.detail


def test_segment_regression_with_evaluate_measures_both_models() -> None:
    def per_segment(model: float, ctx: GateContext) -> dict[str, float]:
        return {f"acc:{name}": model * share for name, share in ctx.inputs["shares"].items()}

    ctx = context(1.0, {}, inputs={"shares": {"new": 0.5, "old": 1.0}})
    assert segment_regression("acc", evaluate=per_segment)(1.0, ctx).passed
    assert not segment_regression("acc", evaluate=per_segment)(0.9, ctx).passed


# ---- size_budget -------------------------------------------------------------------------------------------


def test_size_budget_compares_the_serialized_size() -> None:
    assert size_budget(1000)(None, GateContext(size_bytes=1000)).passed
    over = size_budget(1000)(None, GateContext(size_bytes=1001))
    assert not over.passed and over.metrics == {"bytes": 1001.0, "max_bytes": 1000.0}
    assert "1,001 bytes > budget 1,000" in over.detail
    unknown = size_budget(1000)(None, GateContext())
    assert not unknown.passed and "not known" in unknown.detail


# ---- latency_budget ----------------------------------------------------------------------------------------


class FakeClock:
    """A clock that moves only when the model predicts: each prediction costs `ms_per_row` per row."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Model:
    def __init__(self, clock: FakeClock, ms_per_row: float) -> None:
        self.clock, self.ms_per_row, self.calls = clock, ms_per_row, 0

    def predict(self, batch: list[int]) -> list[int]:
        self.calls += 1
        self.clock.now += self.ms_per_row * len(batch) / 1000
        return batch


def test_latency_budget_times_the_median_batch_after_a_warm_up() -> None:
    clock = FakeClock()
    model = Model(clock, ms_per_row=0.5)
    ctx = GateContext(inputs={"test": list(range(100))}, clock=clock)
    result = latency_budget(60, batch="test", repeats=3)(model, ctx)
    assert result.passed and model.calls == 4
    assert result.metrics == {
        "latency_ms": pytest.approx(50),
        "latency_ms_worst": pytest.approx(50),
        "repeats": 3.0,
        "batch_rows": 100.0,
    }
    assert not latency_budget(40, batch="test")(Model(clock, 0.5), ctx).passed


def test_latency_budget_with_a_batch_function_a_predict_function_and_a_loader() -> None:
    clock = FakeClock()
    calls: list[int] = []

    def predict(model: Model, batch: list[int]) -> list[int]:
        calls.append(len(batch))
        return model.predict(batch)

    def rows(ctx: GateContext) -> list[int]:
        return ctx.inputs["test"][:10]

    gate_fn = latency_budget(10, batch=rows, predict=predict, repeats=2, load=lambda folder: Model(clock, 1.0))
    result = gate_fn("a folder", GateContext(inputs={"test": list(range(100))}, clock=clock))
    assert result.passed and calls == [10, 10, 10]
    assert result.metrics["latency_ms"] == pytest.approx(10)


def test_latency_budget_explains_what_it_cannot_time() -> None:
    clock = FakeClock()
    ctx = GateContext(inputs={"test": [1]}, clock=clock)
    unknown = latency_budget(10, batch="valid")(Model(clock, 1), ctx)
    assert not unknown.passed and "batch='valid' is not an input of the model (inputs: test)" in unknown.detail
    no_method = latency_budget(10, batch="test", predict="score")(Model(clock, 1), ctx)
    assert not no_method.passed and "has no method 'score'" in no_method.detail
    no_clock = latency_budget(10, batch="test")(Model(clock, 1), GateContext(inputs={"test": [1]}))
    assert not no_clock.passed and "no clock" in no_clock.detail
