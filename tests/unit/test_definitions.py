"""Asset definitions, graph validation and selection: every mistake is caught before anything runs."""

from __future__ import annotations

import pytest

from cairn import Context, Resources, Retry, asset, source
from cairn.core.graph import build_graph
from cairn.core.keys import StepId, derive_seed, parse_step, validate_name
from cairn.core.selection import select
from cairn.errors import DefinitionError, UsageError


def _fn_ab(a: int, b: int) -> int:
    return a + b


def test_inputs_come_from_parameter_names_and_context_is_recognised() -> None:
    @asset
    def features(ctx: Context, events: list[int], users: list[int]) -> int:
        return 0

    assert [i.asset for i in features.inputs] == ["events", "users"]
    assert features.context_param == "ctx"


def test_context_by_name_without_annotation() -> None:
    @asset
    def f(context, x):  # type: ignore[no-untyped-def]
        return x

    assert f.context_param == "context"
    assert [i.param for i in f.inputs] == ["x"]


def test_ins_renames_inputs_and_rejects_unknown_parameters() -> None:
    d = asset(name="s", ins={"a": "left", "b": "right"})(_fn_ab)
    assert [(i.param, i.asset) for i in d.inputs] == [("a", "left"), ("b", "right")]
    with pytest.raises(DefinitionError, match=r"ins= maps \['c'\] but the function has no such parameter"):
        asset(name="s2", ins={"c": "x"})(_fn_ab)


def test_options_are_validated_with_the_asset_named() -> None:
    with pytest.raises(DefinitionError, match="asset 'f': retry= must be a cairn.Retry"):
        asset(name="f", retry={"max_attempts": 3})(_fn_ab)  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match="asset 'f': params must be plain values"):
        asset(name="f", params={"x": object()})(_fn_ab)
    with pytest.raises(DefinitionError, match="asset 'f': kind='table' is not one of"):
        asset(name="f", kind="table")(_fn_ab)
    with pytest.raises(DefinitionError, match="asset 'f': timeout= must be a positive number"):
        asset(name="f", timeout=0)(_fn_ab)
    with pytest.raises(DefinitionError, match="must not be negative"):
        Resources(cpu=-1)
    with pytest.raises(DefinitionError, match="max_attempts"):
        Retry(max_attempts=0)


def test_var_args_cannot_name_inputs() -> None:
    def f(*frames: int) -> int:
        return 0

    with pytest.raises(DefinitionError, match=r"\*args/\*\*kwargs parameter 'frames'"):
        asset(f)


@pytest.mark.parametrize("bad", ["../etc", "a/b", "", ".hidden", "x" * 200, "a b", "a..b"])
def test_names_that_could_escape_a_path_are_refused(bad: str) -> None:
    with pytest.raises(DefinitionError, match="is not allowed"):
        validate_name(bad)


def test_parse_step_validates_both_parts() -> None:
    assert parse_step("clean@2026-06-01") == StepId("clean", "2026-06-01")
    with pytest.raises(DefinitionError):
        parse_step("clean@../x")


def test_seed_is_derived_per_asset_partition_and_stable() -> None:
    a = derive_seed(42, StepId("train", ""))
    assert a == derive_seed(42, StepId("train", ""))
    assert a != derive_seed(43, StepId("train", ""))
    assert a != derive_seed(42, StepId("train", "2026-06-01"))
    assert 0 <= a < 2**31


def _graph(**edges: list[str]):  # type: ignore[no-untyped-def]
    defs = []
    for name, ups in edges.items():
        params = ", ".join(ups)
        namespace: dict[str, object] = {}
        exec(f"def {name}({params}):\n    return 1\n", namespace)
        defs.append(asset(namespace[name]))  # type: ignore[arg-type]
    return build_graph(defs)


def test_unknown_input_names_the_closest_asset() -> None:
    with pytest.raises(DefinitionError, match=r"asset 'features' has input 'evnts'.*Did you mean 'events'\?"):
        _graph(events=[], features=["evnts"])


def test_cycle_error_prints_the_cycle_path() -> None:
    with pytest.raises(DefinitionError, match=r"cycle: (a -> b -> c -> a|b -> c -> a -> b|c -> a -> b -> c)"):
        _graph(a=["c"], b=["a"], c=["b"], d=[])


def test_duplicate_names_are_refused_with_both_locations() -> None:
    one = asset(name="x")(_fn_ab)
    two = asset(name="x", params={"k": 1})(_fn_ab)
    with pytest.raises(DefinitionError, match="asset 'x' is defined twice"):
        build_graph([one, two])


def test_topological_order_and_walks() -> None:
    g = _graph(raw=[], clean=["raw"], feat=["clean"], label=["raw"], train=["feat", "label"])
    order = list(g.order)
    assert order.index("raw") < order.index("clean") < order.index("feat") < order.index("train")
    assert g.ancestors(["train"]) == {"raw", "clean", "feat", "label"}
    assert g.descendants(["clean"]) == {"feat", "train"}


def test_selection_syntax() -> None:
    g = _graph(raw=[], clean=["raw"], feat=["clean"], other=[])
    assert select(g, []) == {"raw", "clean", "feat", "other"}
    assert select(g, ["*"]) == {"raw", "clean", "feat", "other"}
    assert select(g, ["clean"]) == {"clean"}
    assert select(g, ["+clean"]) == {"raw", "clean"}
    assert select(g, ["clean+"]) == {"clean", "feat"}
    assert select(g, ["+clean+", "other"]) == {"raw", "clean", "feat", "other"}
    with pytest.raises(UsageError, match="asset 'claen' is not defined. Did you mean 'clean'"):
        select(g, ["claen"])


def test_selection_by_tag() -> None:
    gold = asset(name="gold", tags={"tier": "gold"})(lambda: 1)
    silver = asset(name="silver", tags={"tier": "silver"})(lambda: 1)
    g = build_graph([gold, silver])
    assert select(g, ["tag:tier=gold"]) == {"gold"}
    assert select(g, ["tag:tier"]) == {"gold", "silver"}
    with pytest.raises(UsageError, match="Known tags: tier=gold, tier=silver"):
        select(g, ["tag:tier=bronze"])


def test_source_needs_a_path() -> None:
    with pytest.raises(DefinitionError, match="needs a path"):
        source("raw", path="")
    raw = source("raw", path="data/raw.csv")
    assert raw.is_source and raw.path == "data/raw.csv"
