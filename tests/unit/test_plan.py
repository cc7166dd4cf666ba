"""The planner: a pure function whose every decision carries its reason."""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field, replace

from hypothesis import given
from hypothesis import strategies as st

from cairn.core.keys import StepId
from cairn.core.plan import (
    CACHED_ACTION,
    RUN,
    Change,
    Reason,
    ReasonCode,
    StepSpec,
    critical_path,
    decide,
    key_of,
    plan,
    root_causes,
)
from cairn.core.records import InputRef, Materialization, MaterializationRef


@dataclass
class FakeHistory:
    mats: dict[str, Materialization] = field(default_factory=dict)
    latest: dict[StepId, Materialization] = field(default_factory=dict)
    failed_keys: set[str] = field(default_factory=set)
    missing: set[str] = field(default_factory=set)

    def cached(self, step: StepId, cache_key: str) -> MaterializationRef | None:
        mat = self.mats.get(cache_key)
        return None if mat is None or mat.data_version in self.missing else mat.ref

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


# ---- structured changes -------------------------------------------------------------------------------


def test_param_change_carries_the_old_and_new_values() -> None:
    history = FakeHistory()
    history.add(SPEC, EVENTS, "b3:out")
    reason = decide(StepSpec(FEAT, SPEC.code_version, PARTS, {"window_days": 14}, seed=3), EVENTS, history).reason
    assert reason.changes == (Change("param", "window_days", 7, 14),)


def test_an_added_or_removed_param_has_none_on_its_absent_side() -> None:
    history = FakeHistory()
    history.add(SPEC, EVENTS, "b3:out")
    reason = decide(StepSpec(FEAT, SPEC.code_version, PARTS, {"lr": 0.03}, seed=3), EVENTS, history).reason
    assert str(reason) == "param changed: lr '∅'→0.03; param changed: window_days 7→'∅'"  # the text as before
    assert reason.changes == (Change("param", "lr", None, 0.03), Change("param", "window_days", 7, None))


def test_code_change_has_one_change_per_changed_part_own_body_first() -> None:
    history = FakeHistory()
    history.add(SPEC, EVENTS, "b3:out")
    parts = {"pipeline.user_features": "b3:1b", "pipeline._parse_ts": "b3:2b", "pipeline._window": "b3:3"}
    reason = decide(StepSpec(FEAT, "b3:code2", parts, SPEC.params, seed=3), EVENTS, history).reason
    assert str(reason) == "code changed: user_features → _parse_ts, _window (and its own body)"
    assert reason.changes == (
        Change("code", "user_features", "b3:1", "b3:1b"),
        Change("code", "_parse_ts", "b3:2", "b3:2b"),
        Change("code", "_window", None, "b3:3"),
    )


def test_code_change_without_part_hashes_is_one_change_of_the_whole_code_version() -> None:
    history = FakeHistory()
    spec = StepSpec(FEAT, "b3:v1")
    history.add(spec, [], "b3:out")
    reason = decide(StepSpec(FEAT, "b3:v2"), [], history).reason
    assert str(reason) == "code changed: user_features (code_version b3:v1→b3:v2)"
    assert reason.changes == (Change("code", "user_features", "b3:v1", "b3:v2"),)


def test_input_change_carries_both_data_versions_and_a_new_input_has_none_before() -> None:
    history = FakeHistory()
    history.add(SPEC, EVENTS, "b3:out")
    now = [InputRef("clean_events", "2026-06-02", "b3:ev2"), InputRef("clean_events", "2026-06-03", "b3:ev3")]
    reason = decide(SPEC, now, history).reason
    assert str(reason) == "input changed: clean_events@2026-06-02; input changed: clean_events@2026-06-03"
    assert reason.changes == (
        Change("input", "clean_events@2026-06-02", "b3:ev1", "b3:ev2"),
        Change("input", "clean_events@2026-06-03", None, "b3:ev3"),
    )


def test_seed_and_env_changes_carry_their_values() -> None:
    history = FakeHistory()
    history.add(StepSpec(FEAT, "b3:c", PARTS, {}, seed=1, env={"numpy": "1.26.0"}), [], "b3:out")
    reason = decide(StepSpec(FEAT, "b3:c", PARTS, {}, seed=2, env={"numpy": "2.0.0", "scipy": "1.14"}), [], history)
    assert reason.reason.code is ReasonCode.SEED_CHANGED
    assert reason.reason.changes == (
        Change("seed", "user_features", 1, 2),
        Change("env", "numpy", "1.26.0", "2.0.0"),
        Change("env", "scipy", None, "1.14"),
    )


def test_several_differences_keep_the_first_code_the_joined_text_and_every_change() -> None:
    history = FakeHistory()
    history.add(SPEC, EVENTS, "b3:out")
    parts = {**PARTS, "pipeline._parse_ts": "b3:changed"}
    now = [InputRef("clean_events", "2026-06-02", "b3:ev2")]
    reason = decide(StepSpec(FEAT, "b3:code2", parts, {"window_days": 14}, seed=3), now, history).reason
    assert reason.code is ReasonCode.CODE_CHANGED
    assert str(reason) == (
        "code changed: user_features → _parse_ts; param changed: window_days 7→14; "
        "input changed: clean_events@2026-06-02"
    )
    assert [c.kind for c in reason.changes] == ["code", "param", "input"]


def test_output_missing_and_source_changed_name_the_versions() -> None:
    history = FakeHistory()
    mat = history.add(SPEC, EVENTS, "b3:out")
    history.missing.add(mat.data_version)
    assert decide(SPEC, EVENTS, history).reason.changes == (Change("output", "user_features", "b3:out", None),)
    raw = StepId("raw", "2026-06-02")
    old = StepSpec(raw, code_version="", source_version="b3:s1")
    recorded = history.add(old, [], "b3:s1")
    history.latest[raw] = replace(recorded, code_version="b3:s1")  # as the engine records a source
    reason = decide(StepSpec(raw, code_version="", source_version="b3:s2"), [], history).reason
    assert str(reason) == "source changed: raw@2026-06-02"
    assert reason.changes == (Change("source", "raw@2026-06-02", "b3:s1", "b3:s2"),)


def test_reasons_that_are_no_difference_have_no_changes() -> None:
    history = FakeHistory()
    assert decide(SPEC, EVENTS, history).reason.changes == ()  # never materialized
    history.add(SPEC, EVENTS, "b3:out")
    assert decide(SPEC, EVENTS, history).reason.changes == ()  # cached
    assert decide(SPEC, EVENTS, history, force=True).reason.changes == ()


def test_reason_to_dict_is_json_safe_and_str_is_the_detail() -> None:
    reason = Reason(
        ReasonCode.PARAM_CHANGED,
        "param changed: when 2026-01-01→2026-02-01",
        (
            Change("param", "when", datetime.date(2026, 1, 1), datetime.date(2026, 2, 1)),
            Change("param", "sizes", (1, 2), [1, 2, float("nan")]),
            Change("param", "opts", {"a": 1}, None),
        ),
    )
    data = json.loads(json.dumps(reason.to_dict(), allow_nan=False))
    assert data == {
        "code": "param changed",
        "detail": "param changed: when 2026-01-01→2026-02-01",
        "changes": [
            {"kind": "param", "subject": "when", "old": "2026-01-01", "new": "2026-02-01"},
            {"kind": "param", "subject": "sizes", "old": [1, 2], "new": [1, 2, "nan"]},
            {"kind": "param", "subject": "opts", "old": {"a": 1}, "new": None},
        ],
    }
    assert str(reason) == reason.detail
    assert Reason(ReasonCode.NEVER).to_dict() == {"code": "never materialized", "detail": "", "changes": []}


# "∅" is what the text shows for an absent param: a param whose value is "∅" reads as unchanged, as before
params_values = st.one_of(st.integers(), st.floats(allow_nan=False), st.text("ab∅", max_size=3), st.booleans())


@given(
    st.dictionaries(st.sampled_from("abcd"), params_values, max_size=4),
    st.dictionaries(st.sampled_from("abcd"), params_values, max_size=4),
)
def test_param_changes_are_exactly_the_params_that_differ(before: dict[str, object], after: dict[str, object]) -> None:
    history = FakeHistory()
    history.add(StepSpec(FEAT, "b3:c", params=before), [], "b3:out")
    reason = decide(StepSpec(FEAT, "b3:c", params=after), [], history).reason
    differ = sorted(k for k in before.keys() | after.keys() if before.get(k, "∅") != after.get(k, "∅"))
    assert [c.subject for c in reason.changes] == differ
    assert all(
        c.kind == "param" and (c.old, c.new) == (before.get(c.subject), after.get(c.subject)) for c in reason.changes
    )
    assert str(reason).count("param changed: ") == len(differ)
    json.dumps(reason.to_dict(), allow_nan=False)


# ---- root causes --------------------------------------------------------------------------------------


def _two_sources_into_a_chain() -> tuple[dict[StepId, list[StepId]], dict[StepId, StepSpec], FakeHistory]:
    """a and b feed c, c feeds d; every step materialized with its current spec."""
    a, b, c, d = StepId("a"), StepId("b"), StepId("c"), StepId("d")
    inputs_of = {c: [a, b], d: [c]}
    specs = {s: StepSpec(s, f"b3:{s.asset}") for s in (a, b, c, d)}
    history = FakeHistory()
    mats = {s: history.add(specs[s], [], f"b3:{s.asset.upper()}") for s in (a, b)}
    mat_c = history.add(specs[c], [InputRef(s.asset, "", mats[s].data_version) for s in (a, b)], "b3:C")
    history.add(specs[d], [InputRef("c", "", mat_c.data_version)], "b3:D")
    return inputs_of, specs, history


ABCD = [StepId("a"), StepId("b"), StepId("c"), StepId("d")]


def test_root_causes_are_the_upstream_steps_that_run_for_their_own_reason() -> None:
    a, b, c, d = ABCD
    inputs_of, specs, history = _two_sources_into_a_chain()
    result = plan(ABCD, specs, inputs_of, history, frozenset({a, b}))
    assert str(result.steps[3].reason) == "upstream runs: c"
    causes = root_causes(result, inputs_of, d)
    assert [(str(x.step), str(x.reason)) for x in causes] == [("a", "forced"), ("b", "forced")]
    assert root_causes(result, inputs_of, c) == causes
    assert root_causes(result, inputs_of, a) == []  # it runs for a reason of its own


def test_root_causes_leave_out_cached_upstream_steps_and_are_empty_for_a_cached_step() -> None:
    _, b, _, d = ABCD
    inputs_of, specs, history = _two_sources_into_a_chain()
    assert root_causes(plan(ABCD, specs, inputs_of, history), inputs_of, d) == []
    edited = {**specs, b: StepSpec(b, "b3:b-edited")}
    causes = root_causes(plan(ABCD, edited, inputs_of, history), inputs_of, d)
    assert [str(x.step) for x in causes] == ["b"]
    assert causes[0].reason.changes == (Change("code", "b", "b3:b", "b3:b-edited"),)
