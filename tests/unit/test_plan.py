"""The planner: a pure function whose every decision carries its reason."""

from __future__ import annotations

from dataclasses import dataclass, field

from cairn.core.keys import StepId
from cairn.core.plan import CACHED_ACTION, RUN, ReasonCode, StepSpec, critical_path, decide, key_of, plan
from cairn.core.records import InputRef, Materialization


@dataclass
class FakeHistory:
    mats: dict[str, Materialization] = field(default_factory=dict)
    latest: dict[StepId, Materialization] = field(default_factory=dict)
    failed_keys: set[str] = field(default_factory=set)
    missing: set[str] = field(default_factory=set)

    def cached(self, step: StepId, cache_key: str) -> Materialization | None:
        mat = self.mats.get(cache_key)
        return None if mat is None or mat.data_version in self.missing else mat

    def previous(self, step: StepId) -> Materialization | None:
        return self.latest.get(step)

    def failed(self, cache_key: str) -> bool:
        return cache_key in self.failed_keys

    def add(self, spec: StepSpec, inputs: list[InputRef], data_version: str) -> Materialization:
        mat = Materialization(
            asset=spec.step.asset,
            partition=spec.step.partition,
            cache_key=key_of(spec, inputs),
            data_version=data_version,
            size=1,
            format="json",
            pytype="json",
            run_id="r1",
            attempt=1,
            code_version=spec.code_version,
            code_parts=dict(spec.code_parts),
            params=dict(spec.params),
            seed=spec.seed,
            inputs=tuple(inputs),
            metadata={"cairn.env": dict(spec.env)} if spec.env else {},
        )
        self.mats[mat.cache_key] = mat
        self.latest[spec.step] = mat
        return mat


FEAT = StepId("user_features")
PARTS = {"pipeline.user_features": "b3:1", "pipeline._parse_ts": "b3:2"}
SPEC = StepSpec(FEAT, code_version="b3:code1", code_parts=PARTS, params={"window_days": 7}, seed=3)
EVENTS = [InputRef("clean_events", "2026-06-02", "b3:ev1")]


def test_never_materialized_then_cached() -> None:
    history = FakeHistory()
    first = decide(SPEC, EVENTS, history)
    assert first.action == RUN and first.reason.code is ReasonCode.NEVER
    history.add(SPEC, EVENTS, "b3:out")
    again = decide(SPEC, EVENTS, history)
    assert again.action == CACHED_ACTION and again.cached is not None and again.cache_key == first.cache_key


def test_param_change_names_the_param_and_both_values() -> None:
    history = FakeHistory()
    history.add(SPEC, EVENTS, "b3:out")
    changed = StepSpec(FEAT, SPEC.code_version, PARTS, {"window_days": 14}, seed=3)
    decision = decide(changed, EVENTS, history)
    assert decision.reason.code is ReasonCode.PARAM_CHANGED
    assert str(decision.reason) == "param changed: window_days 7→14"


def test_code_change_names_the_helper_that_changed() -> None:
    history = FakeHistory()
    history.add(SPEC, EVENTS, "b3:out")
    parts = {**PARTS, "pipeline._parse_ts": "b3:changed"}
    decision = decide(StepSpec(FEAT, "b3:code2", parts, SPEC.params, seed=3), EVENTS, history)
    assert str(decision.reason) == "code changed: user_features → _parse_ts"


def test_input_change_names_the_input_partition() -> None:
    history = FakeHistory()
    history.add(SPEC, EVENTS, "b3:out")
    decision = decide(SPEC, [InputRef("clean_events", "2026-06-02", "b3:ev2")], history)
    assert decision.reason.code is ReasonCode.INPUT_CHANGED
    assert str(decision.reason) == "input changed: clean_events@2026-06-02"


def test_env_change_names_the_distribution() -> None:
    history = FakeHistory()
    spec = StepSpec(FEAT, "b3:c", PARTS, {}, env={"numpy": "1.26.0"})
    history.add(spec, [], "b3:out")
    decision = decide(StepSpec(FEAT, "b3:c", PARTS, {}, env={"numpy": "2.0.0"}), [], history)
    assert str(decision.reason) == "env changed: numpy 1.26.0→2.0.0"


def test_forced_disabled_failed_and_missing_outputs() -> None:
    history = FakeHistory()
    mat = history.add(SPEC, EVENTS, "b3:out")
    assert decide(SPEC, EVENTS, history, force=True).reason.code is ReasonCode.FORCED
    no_cache = StepSpec(FEAT, SPEC.code_version, PARTS, SPEC.params, seed=3, cache=False)
    assert decide(no_cache, EVENTS, history).reason.code is ReasonCode.CACHE_DISABLED
    history.missing.add(mat.data_version)
    assert decide(SPEC, EVENTS, history).reason.code is ReasonCode.OUTPUT_MISSING
    other = StepSpec(FEAT, SPEC.code_version, PARTS, {"window_days": 30}, seed=3)
    history.failed_keys.add(key_of(other, EVENTS))
    assert decide(other, EVENTS, history).reason.code is ReasonCode.PREVIOUS_FAILED


def test_keys_cover_every_component() -> None:
    base = key_of(SPEC, EVENTS)
    variants = [
        StepSpec(StepId("other"), SPEC.code_version, PARTS, SPEC.params, seed=3),
        StepSpec(StepId(FEAT.asset, "p1"), SPEC.code_version, PARTS, SPEC.params, seed=3),
        StepSpec(FEAT, "b3:code9", PARTS, SPEC.params, seed=3),
        StepSpec(FEAT, SPEC.code_version, PARTS, {"window_days": 8}, seed=3),
        StepSpec(FEAT, SPEC.code_version, PARTS, SPEC.params, seed=4),
        StepSpec(FEAT, SPEC.code_version, PARTS, SPEC.params, seed=3, env={"numpy": "2"}),
    ]
    keys = {key_of(v, EVENTS) for v in variants} | {key_of(SPEC, [InputRef("clean_events", "2026-06-02", "b3:x")])}
    assert base not in keys and len(keys) == len(variants) + 1
    assert base.startswith("b3:")


def test_plan_marks_steps_below_a_running_step_as_upstream_runs() -> None:
    a, b, c = StepId("a"), StepId("b"), StepId("c")
    specs = {s: StepSpec(s, f"b3:{s.asset}") for s in (a, b, c)}
    history = FakeHistory()
    mat_a = history.add(specs[a], [], "b3:A")
    history.add(specs[b], [InputRef("a", "", mat_a.data_version)], "b3:B")
    result = plan([a, b, c], specs, {b: [a], c: [b]}, history)
    actions = {d.step.asset: (d.action, d.reason.code) for d in result.steps}
    assert actions["a"] == (CACHED_ACTION, ReasonCode.CACHED)
    assert actions["b"] == (CACHED_ACTION, ReasonCode.CACHED)
    assert actions["c"] == (RUN, ReasonCode.NEVER)
    forced = plan([a, b, c], specs, {b: [a], c: [b]}, history, frozenset({a}))
    assert [str(d.reason) for d in forced.steps] == ["forced", "upstream runs: a", "upstream runs: b"]


def test_critical_path_weights_by_past_durations() -> None:
    a, b, c, d = StepId("a"), StepId("b"), StepId("c"), StepId("d")
    lengths = critical_path([a, b, c, d], {a: [b], b: [d], c: [d]}, {"a": 1.0, "b": 5.0, "c": 1.0, "d": 2.0})
    assert lengths == {d: 2.0, c: 3.0, b: 7.0, a: 8.0}
