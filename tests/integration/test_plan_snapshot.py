"""`cairn plan --snapshot` and `cairn why --snapshot` say what `cairn run --snapshot` would do (CLI in a subprocess)."""

from __future__ import annotations

import json

import cairn
from tests.conftest import ProjectFactory, cli, set_pipeline

PIPELINE = """
from cairn import asset

@asset
def clean() -> list[int]:
    return [1, 2, 3]

@asset
def report(clean: list[int]) -> int:
    return sum(clean)
"""


def test_plan_and_why_read_upstream_assets_outside_the_selection_from_the_snapshot(
    make_project: ProjectFactory,
) -> None:
    root = make_project(PIPELINE)
    assert cairn.materialize(project=root).ok
    assert cli("-C", str(root), "snapshot", "create", "base", "clean").returncode == 0
    set_pipeline(root, PIPELINE.replace("[1, 2, 3]", "[1, 2, 4]").replace("sum(clean)", "sum(clean) * 2"))

    plain = json.loads(cli("-C", str(root), "plan", "report", "--json").stdout)
    reasons = {s["asset"]: (s["action"], s["reason"]) for s in plain["steps"]}
    assert reasons["clean"][0] == "run" and reasons["report"] == ("run", "upstream runs: clean")

    pinned = cli("-C", str(root), "plan", "report", "--snapshot", "base", "--json")
    assert pinned.returncode == 0, pinned.stderr
    reasons = {s["asset"]: (s["action"], s["reason"]) for s in json.loads(pinned.stdout)["steps"]}
    assert reasons["clean"] == ("cached", "pinned by snapshot base")
    assert reasons["report"] == ("run", "code changed: report")
    text = cli("-C", str(root), "plan", "report", "--snapshot", "base").stdout
    assert "pinned by snapshot base" in text and "1 to run, 1 cached" in text

    why = json.loads(cli("-C", str(root), "why", "report", "--snapshot", "base", "--json").stdout)
    assert why["fresh"] is False and why["reason"] == "code changed: report" and why["upstream"] == []

    run = cairn.materialize("report", project=root, snapshot="base")
    assert run["clean"].status == "cached" and run["clean"].reason == "pinned by snapshot base"
    assert run["report"].status == "executed" and cairn.load("report", project=root) == 12
    fresh = cli("-C", str(root), "why", "report", "--snapshot", "base")
    assert fresh.returncode == 0 and "report is fresh" in fresh.stdout
    stale = cli("-C", str(root), "why", "report")
    assert "report is stale" in stale.stdout and "because clean" in stale.stdout

    unknown = cli("-C", str(root), "plan", "report", "--snapshot", "nope")
    assert unknown.returncode == 2 and "snapshot 'nope'" in unknown.stderr
