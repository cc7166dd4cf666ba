"""What a recorded dataset spec needs: `[params]` in cairn.toml (the project's own param values and seeds),
`ctx.input_versions` (the data version of everything a step was given) and the metadata a step added, shown
by `cairn show RUN --json`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import cairn
from cairn.config import parse_settings
from cairn.errors import ConfigError
from tests.conftest import ProjectFactory, cli

PIPELINE = """
from cairn import AllPartitions, Context, asset, daily

DAYS = daily("2026-06-01", end="2026-06-04")

@asset(params={"n": 1, "seed": 0})
def source_numbers(ctx: Context) -> list[int]:
    return [ctx.params["n"], ctx.params["seed"]]

@asset(partitions=DAYS)
def daily_count(ctx: Context, source_numbers: list[int]) -> int:
    return source_numbers[0] + int(ctx.partition[-1])

@asset(ins={"days": AllPartitions("daily_count")})
def spec(ctx: Context, days: dict[str, int], source_numbers: list[int]) -> dict:
    ctx.add_metadata(pinned=dict(ctx.input_versions), rows=len(days))
    return {"inputs": dict(ctx.input_versions), "total": sum(days.values())}
"""


def test_params_table_overrides_the_code_defaults_and_is_overridden_by_profiles_and_set(
    make_project: ProjectFactory,
) -> None:
    root = make_project(
        PIPELINE,
        extra="""
        [params]
        source_numbers = { n = 5, seed = 11 }

        [profiles.more]
        source_numbers = { n = 9 }
        """,
    )
    assert cairn.materialize(["source_numbers"], project=root).ok
    assert cairn.load("source_numbers", project=root) == [5, 11]
    assert cairn.materialize(["source_numbers"], project=root, profile="more").ok
    assert cairn.load("source_numbers", project=root) == [9, 11]
    result = cairn.materialize(["source_numbers"], project=root, params={"source_numbers": {"seed": 12}})
    assert "param changed: seed 11→12" in result["source_numbers"].reason
    assert cairn.load("source_numbers", project=root) == [5, 12]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ("nope = { n = 1 }", r"\[params\]: asset 'nope' is not defined"),
        ("source_numbers = { m = 1 }", r"asset 'source_numbers' has no param 'm'. Its params: n, seed"),
    ],
)
def test_params_table_names_only_existing_assets_and_params(
    make_project: ProjectFactory, params: str, message: str
) -> None:
    root = make_project(PIPELINE, extra=f"[params]\n{params}\n")
    with pytest.raises(ConfigError, match=message):
        cairn.materialize(project=root)


def test_params_table_must_map_assets_to_tables() -> None:
    with pytest.raises(ConfigError, match=r"\[params\] must map asset names to param tables"):
        parse_settings({"params": {"train": 5}}, Path("."))


def test_context_input_versions_name_the_data_version_of_every_input(make_project: ProjectFactory) -> None:
    root = make_project(PIPELINE)
    result = cairn.materialize(["spec"], project=root)
    assert result.ok
    versions = {(s.asset, s.partition): s.data_version for s in result.steps}
    recorded = cairn.load("spec", project=root)
    assert recorded["total"] == 1 + 2 + 3 + 3
    assert recorded["inputs"] == {
        "days": {day: versions[("daily_count", day)] for day in ("2026-06-01", "2026-06-02", "2026-06-03")},
        "source_numbers": versions[("source_numbers", "")],
    }


def test_show_json_lists_the_metadata_each_step_added(make_project: ProjectFactory) -> None:
    root = make_project(PIPELINE)
    assert cairn.materialize(["spec"], project=root).ok
    done = cli("-C", str(root), "show", "latest", "--json")
    assert done.returncode == 0, done.stderr
    steps = {(s["asset"], s["partition"]): s for s in json.loads(done.stdout)["steps"]}
    spec = steps[("spec", None)]["metadata"]
    assert spec["rows"] == 3
    assert spec["pinned"]["source_numbers"] == steps[("source_numbers", None)]["data_version"]
    assert steps[("daily_count", "2026-06-01")]["metadata"] == {}
