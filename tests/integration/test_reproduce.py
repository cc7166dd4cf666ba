"""`cairn reproduce` on real runs, and the environment capture it compares against."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

import cairn
from cairn.core.keys import StepId
from cairn.engine.api import open_stores
from cairn.engine.reproduce import reproduce
from cairn.errors import UsageError
from cairn.project import load_project
from cairn.tracking.environment import capture, distributions
from tests.conftest import ProjectFactory, cli, set_pipeline

PIPELINE = """
import os
import random

from cairn import Context, asset, source

raw = source("raw", path="data/raw.json")


def _scale(x):
    return 2 * x


@asset(params={"k": 1})
def clean(ctx: Context, raw: dict) -> list[int]:
    return sorted(_scale(v) * ctx.params["k"] for v in raw["values"])


@asset
def seeded(ctx: Context, clean: list[int]) -> list[float]:
    rng = random.Random(ctx.seed)
    return [v * rng.random() for v in clean]


@asset
def noisy(clean: list[int]) -> float:
    return sum(clean) * random.random()


@asset
def salted(clean: list[int]) -> bytes:
    return os.urandom(8) + bytes(clean)
"""


@pytest.fixture
def project(make_project: ProjectFactory) -> Path:
    root = make_project(PIPELINE)
    (root / "data").mkdir()
    (root / "data" / "raw.json").write_text('{"values": [3, 1, 2]}', encoding="utf-8")
    return root


def _counts(root: Path) -> list[int]:
    """How many runs, steps and materializations are recorded."""
    with closing(sqlite3.connect(root / ".cairn" / "cairn.db")) as db:
        return [db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("runs", "steps", "materializations")]


def test_a_deterministic_step_reproduces_identical_and_records_nothing(project: Path) -> None:
    run = cairn.materialize(project=project)
    before = _counts(project)
    out = cli("reproduce", "clean", "-C", str(project), "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["verdict"] == "identical" and data["recorded"] == data["reproduced"] == run["clean"].data_version
    assert data["run_id"] == run.run_id and data["code"]["changed_parts"] == {}
    seeded = cli("reproduce", "seeded", "-C", str(project))
    assert seeded.returncode == 0 and "seeded (run " in seeded.stdout and "identical" in seeded.stdout
    assert _counts(project) == before


@pytest.mark.parametrize("asset", ["noisy", "salted"])
def test_unseeded_randomness_reproduces_as_differs(project: Path, asset: str) -> None:
    run = cairn.materialize(project=project)
    out = cli("reproduce", asset, "-C", str(project), "--json")
    assert out.returncode == 1 and out.stdout, out.stderr
    data = json.loads(out.stdout)
    assert data["verdict"] == "differs" and data["recorded"] == run[asset].data_version
    assert data["reproduced"].startswith("b3:") and data["reproduced"] != data["recorded"]
    assert data["code"]["recorded"] == data["code"]["current"] and data["environment"] == {}
    text = cli("reproduce", asset, "-C", str(project))
    assert text.returncode == 1 and "differs" in text.stdout and "the step is not deterministic" in text.stdout


def test_a_code_change_since_the_record_is_named(project: Path) -> None:
    cairn.materialize("clean", project=project)
    set_pipeline(project, PIPELINE.replace("return 2 * x", "return 3 * x"))
    with open_stores(load_project(project).settings) as stores:
        result = reproduce(load_project(project), stores, StepId("clean"))
    assert result.verdict == "differs" and result.code_recorded != result.code_current
    assert [c.name for c in result.code_parts] == ["pipeline._scale"]
    text = cli("reproduce", "clean", "-C", str(project))
    assert text.returncode == 1 and "(changed: pipeline._scale)" in text.stdout


def test_an_older_run_is_reproduced_with_its_recorded_params(project: Path) -> None:
    first = cairn.materialize("clean", project=project)
    second = cairn.materialize("clean", project=project, params={"clean": {"k": 5}})
    assert second["clean"].data_version != first["clean"].data_version
    out = json.loads(cli("reproduce", "clean", "--run", first.run_id, "-C", str(project), "--json").stdout)
    assert out["verdict"] == "identical" and out["reproduced"] == first["clean"].data_version
    latest = json.loads(cli("reproduce", "clean", "-C", str(project), "--json").stdout)
    assert latest["verdict"] == "identical" and latest["reproduced"] == second["clean"].data_version


def test_sources_missing_inputs_and_failures_are_explained(project: Path) -> None:
    run = cairn.materialize(project=project)
    source = cli("reproduce", "raw", "-C", str(project))
    assert source.returncode == 2 and "'raw' is a source" in source.stderr and "cairn impact raw" in source.stderr
    never = cli("reproduce", "clean", "--run", "nope", "-C", str(project))
    assert never.returncode == 2 and "no run id starts with 'nope'" in never.stderr
    digest = run["raw"].data_version
    assert digest is not None
    hexd = digest.removeprefix("b3:")
    (project / ".cairn" / "artifacts" / "objects" / hexd[:2] / hexd[2:]).unlink()
    missing = cli("reproduce", "clean", "-C", str(project))
    assert missing.returncode == 1 and f"input raw at {digest} is not in the artifact store" in missing.stderr
    cairn.materialize(project=project)  # restores the source object: same bytes
    set_pipeline(project, PIPELINE.replace("return 2 * x", "raise ValueError('broken helper')"))
    failed = json.loads(cli("reproduce", "clean", "-C", str(project), "--json").stdout)
    assert failed["verdict"] == "failed" and "ValueError: broken helper" in failed["error"]


def test_a_removed_asset_or_changed_inputs_cannot_be_reproduced(project: Path) -> None:
    cairn.materialize(project=project)
    set_pipeline(project, PIPELINE.replace("def salted(clean: list[int])", "def salted(raw: dict)"))
    with open_stores(load_project(project).settings) as stores, pytest.raises(UsageError, match="reads raw, but the"):
        reproduce(load_project(project), stores, StepId("salted"))
    set_pipeline(project, PIPELINE.split("@asset\ndef noisy")[0])
    gone = cli("reproduce", "noisy", "-C", str(project))
    assert gone.returncode == 2 and "asset 'noisy' is no longer defined" in gone.stderr


WINDOWED = """
from cairn import Context, Window, asset, daily

DAYS = daily("2026-06-01", end="2026-06-05")

@asset(partitions=DAYS)
def day(ctx: Context) -> dict:
    return {"day": ctx.partition}

@asset(partitions=DAYS, ins={"days": Window("day", 3)})
def rolling(ctx: Context, days: dict) -> list:
    return [ctx.partition, sorted(days)]
"""


def test_a_windowed_partition_reproduces_from_its_recorded_window(make_project: ProjectFactory) -> None:
    root = make_project(WINDOWED, name="windowed")
    run = cairn.materialize(project=root)
    assert run.ok
    out = cli("reproduce", "rolling@2026-06-03", "-C", str(root), "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["verdict"] == "identical" and data["partition"] == "2026-06-03"
    tree = json.loads(cli("lineage", "rolling@2026-06-03", "-C", str(root), "--json").stdout)
    assert [n["partition"] for n in tree["inputs"]] == ["2026-06-01", "2026-06-02", "2026-06-03"]


# ---- environment capture -----------------------------------------------------------------------


def test_the_environment_names_interpreter_distributions_and_host() -> None:
    env = capture()
    assert env["python"] == ".".join(map(str, sys.version_info[:3])) and env["cairn"] == cairn.__version__
    assert env["os"] and env["arch"] and env["host"]
    assert env["distributions"]["blake3"] and env["distributions"]["pyarrow"]
    assert list(env["distributions"]) == sorted(env["distributions"])
    assert "git_commit" not in env
    json.dumps(env)


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_commit_and_dirty_state_are_recorded_in_a_work_tree(tmp_path: Path) -> None:
    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(tmp_path), *args], capture_output=True, text=True, check=True)
        return done.stdout.strip()

    assert capture(tmp_path).get("git_commit") is None  # not a work tree
    git("init", "-q")
    git("config", "user.email", "t@example.com")
    git("config", "user.name", "t")
    (tmp_path / "pipeline.py").write_text("x = 1\n")
    assert "git_commit" not in capture(tmp_path)  # no commit yet
    git("add", "pipeline.py")
    git("commit", "-q", "-m", "one")
    clean = capture(tmp_path)
    assert clean["git_commit"] == git("rev-parse", "HEAD") and clean["git_dirty"] is False
    assert "git_diff" not in clean
    (tmp_path / "pipeline.py").write_text("x = 2\n")
    dirty = capture(tmp_path)
    assert dirty["git_dirty"] is True and dirty["git_diff"].startswith("b3:")
    (tmp_path / "pipeline.py").write_text("x = 3\n")
    assert capture(tmp_path)["git_diff"] != dirty["git_diff"]
    (tmp_path / "pipeline.py").write_text("x = 1\n")
    (tmp_path / "new.py").write_text("y = 1\n")
    untracked = capture(tmp_path)
    assert untracked["git_dirty"] is True


def test_capture_is_cheap() -> None:
    """Well under 50 ms on the machines this was measured on; the bounds leave room for a loaded CI machine."""
    distributions.cache_clear()
    started = time.perf_counter()
    capture(Path(__file__).parent)
    first = time.perf_counter() - started
    again = []
    for _ in range(5):
        started = time.perf_counter()
        capture(Path(__file__).parent)
        again.append(time.perf_counter() - started)
    assert first < 2.0 and min(again) < 0.25


def test_a_packages_private_copies_of_its_dependencies_are_not_installed_distributions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "lib" / "site-packages"
    (site / "somepkg-1.0.dist-info").mkdir(parents=True)
    (site / "bigpkg" / "thirdparty_files" / "vendored-0.4.dist-info").mkdir(parents=True)
    monkeypatch.setattr(sys, "path", [str(site), str(site / "bigpkg" / "thirdparty_files")])
    distributions.cache_clear()
    try:
        assert distributions() == (("somepkg", "1.0"),)
    finally:
        distributions.cache_clear()
