"""`cairn why --json` in a subprocess: the structured changes behind a reason, at the top and upstream."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ProjectFactory, cli, set_pipeline

PIPELINE = """
import cairn


def _scale(values, factor):
    return [v * factor for v in values]


@cairn.asset(params={"lr": 0.1})
def weights(ctx):
    return _scale([1.0, 2.0], ctx.params["lr"])


@cairn.asset
def report(weights):
    return {"total": sum(weights)}
"""


@pytest.fixture(autouse=True)
def _forget_pipeline_module() -> Iterator[None]:
    yield
    sys.modules.pop("pipeline", None)


def why_json(root: Path, *args: str) -> dict[str, object]:
    done = cli("-C", str(root), "why", *args, "--json")
    assert done.returncode == 0, done.stderr
    data: dict[str, object] = json.loads(done.stdout)
    return data


@pytest.fixture
def root(make_project: ProjectFactory) -> Path:
    project = make_project(PIPELINE)
    done = cli("-C", str(project), "run")
    assert done.returncode == 0, done.stderr
    return project


def test_why_json_reports_a_param_change_with_old_and_new_values(root: Path) -> None:
    data = why_json(root, "weights", "--set", "weights.lr=0.03")
    assert data["fresh"] is False and data["reason"] == "param changed: lr 0.1→0.03"
    assert data["changes"] == [{"kind": "param", "subject": "lr", "old": 0.1, "new": 0.03}]
    downstream = why_json(root, "report", "--set", "weights.lr=0.03")
    assert downstream["reason"] == "upstream runs: weights" and downstream["changes"] == []
    assert downstream["upstream"] == [{"step": "weights", "reason": "param changed: lr 0.1→0.03"}]
    assert downstream["upstream_changes"] == {"weights": [{"kind": "param", "subject": "lr", "old": 0.1, "new": 0.03}]}


def test_why_json_reports_a_code_change_naming_the_part(root: Path) -> None:
    set_pipeline(root, PIPELINE.replace("v * factor", "factor * v + 0.0"))
    data = why_json(root, "weights")
    assert data["reason"] == "code changed: weights → _scale"
    changes = data["changes"]
    assert isinstance(changes, list) and len(changes) == 1
    change = changes[0]
    assert change["kind"] == "code" and change["subject"] == "_scale"
    assert change["old"].startswith("b3:") and change["new"].startswith("b3:") and change["old"] != change["new"]
    report = why_json(root, "report")
    assert report["upstream"] == [{"step": "weights", "reason": "code changed: weights → _scale"}]
    assert report["upstream_changes"] == {"weights": changes}


def test_why_json_of_a_fresh_asset_has_no_changes(root: Path) -> None:
    data = why_json(root, "report")
    assert data["fresh"] is True and data["changes"] == [] and data["upstream"] == []
