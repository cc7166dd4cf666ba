"""The engine end to end on real files and a real SQLite database (inline executor unless stated)."""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest

import cairn
from cairn.errors import DefinitionError, UsageError
from tests.conftest import ProjectFactory, set_pipeline

CHAIN = """
from cairn import Context, asset

OFFSET = 1

def _shift(x):
    return x + OFFSET

@asset(params={"n": 5})
def numbers(ctx: Context) -> list[int]:
    return [_shift(i) for i in range(ctx.params["n"])]

@asset
def parity(numbers: list[int]) -> list[int]:
    return sorted({n % 2 for n in numbers})

@asset
def report(ctx: Context, parity: list[int]) -> dict:
    ctx.log.info("parity has %d values", len(parity))
    ctx.log_metric("values", len(parity))
    ctx.add_metadata(note="ok")
    return {"parity": parity}
"""


def statuses(result: cairn.materialize.__class__) -> dict[str, str]:  # type: ignore[name-defined]
    return {s.asset: s.status for s in result.steps}


def test_first_run_executes_and_second_run_is_all_cached(make_project: ProjectFactory) -> None:
    root = make_project(CHAIN)
    first = cairn.materialize(project=root)
    assert first.ok and statuses(first) == {"numbers": "executed", "parity": "executed", "report": "executed"}
    assert {s.reason for s in first.steps} == {"never materialized"}
    second = cairn.materialize(project=root)
    assert statuses(second) == {"numbers": "cached", "parity": "cached", "report": "cached"}
    assert cairn.load("report", project=root) == {"parity": [0, 1]}


def test_early_cutoff_keeps_downstream_cached_when_output_bytes_are_equal(make_project: ProjectFactory) -> None:
    root = make_project(CHAIN)
    cairn.materialize(project=root)
    result = cairn.materialize(project=root, params={"numbers": {"n": 7}})
    assert statuses(result) == {"numbers": "executed", "parity": "executed", "report": "cached"}
    assert result["numbers"].reason == "param changed: n 5→7"
    assert result["parity"].reason == "input changed: numbers"


def test_helper_change_reruns_and_names_the_helper(make_project: ProjectFactory) -> None:
    root = make_project(CHAIN)
    cairn.materialize(project=root)
    set_pipeline(root, CHAIN.replace("return x + OFFSET", "return x + OFFSET * 2"))
    result = cairn.materialize(project=root)
    assert result["numbers"].reason == "code changed: numbers → _shift"
    assert result["numbers"].status == "executed"


def code_versions(root: Path) -> dict[str, str]:
    from cairn.project import load_project

    project = load_project(root)
    versions = {name: project.code(asset)[0] for name, asset in project.graph.assets.items()}
    project.save_code_cache()
    return versions


def test_code_versions_are_kept_for_unchanged_files_and_recomputed_for_edited_ones(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cairn.project

    root = make_project(CHAIN)
    cache = root / ".cairn" / "code-cache.json"
    cold = code_versions(root)
    assert cache.exists()

    def no_parsing(path: str) -> None:
        raise AssertionError(f"{path} was parsed although its code parts are stored")

    with monkeypatch.context() as patched:
        patched.setattr(cairn.project, "_index_file", no_parsing)
        assert code_versions(root) == cold

    set_pipeline(root, CHAIN.replace("return x + OFFSET", "return x + OFFSET * 2"))
    edited = code_versions(root)
    assert edited["numbers"] != cold["numbers"] and edited["parity"] == cold["parity"]
    set_pipeline(root, CHAIN)
    assert code_versions(root) == cold


def _malformed_parts(text: str) -> str:
    stored = json.loads(text)
    for parts in stored["files"].values():
        for place in parts:
            parts[place] = ["b3:forged", [7]]
    return json.dumps(stored)


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: "{not json",
        lambda text: '["a list"]',
        lambda text: text.replace('"format": 1', '"format": 0'),
        lambda text: text.replace(sys.implementation.cache_tag, "someone-else"),
        _malformed_parts,
    ],
    ids=["not-json", "not-an-object", "other-format", "other-python", "malformed-parts"],
)
def test_a_damaged_or_foreign_code_cache_is_ignored_and_rewritten(
    make_project: ProjectFactory, damage: Callable[[str], str]
) -> None:
    root = make_project(CHAIN)
    expected = code_versions(root)
    cache = root / ".cairn" / "code-cache.json"
    cache.write_text(damage(cache.read_text(encoding="utf-8")), encoding="utf-8")
    assert code_versions(root) == expected
    assert json.loads(cache.read_text(encoding="utf-8"))["python"] == sys.implementation.cache_tag
    assert "forged" not in cache.read_text(encoding="utf-8")


def test_constant_change_reruns(make_project: ProjectFactory) -> None:
    root = make_project(CHAIN)
    cairn.materialize(project=root)
    set_pipeline(root, CHAIN.replace("OFFSET = 1", "OFFSET = 2"))
    result = cairn.materialize(project=root)
    assert result["numbers"].status == "executed" and result["numbers"].reason.startswith("code changed: numbers")
    assert result["parity"].status == "executed" and result["parity"].reason == "input changed: numbers"


def test_comment_and_docstring_changes_keep_everything_cached(make_project: ProjectFactory) -> None:
    root = make_project(CHAIN)
    cairn.materialize(project=root)
    edited = CHAIN.replace("def _shift(x):\n", 'def _shift(x):\n    """Shift by the offset."""  # doc\n')
    set_pipeline(root, edited)
    assert cairn.materialize(project=root).count("executed") == 0


def test_selection_runs_stale_upstream_but_not_unselected_downstream(make_project: ProjectFactory) -> None:
    root = make_project(CHAIN)
    result = cairn.materialize("parity", project=root)
    assert statuses(result) == {"numbers": "executed", "parity": "executed"}


def test_force_reruns_only_the_selected_asset(make_project: ProjectFactory) -> None:
    root = make_project(CHAIN)
    cairn.materialize(project=root)
    result = cairn.materialize("report", project=root, force=True)
    assert statuses(result) == {"numbers": "cached", "parity": "cached", "report": "executed"}
    assert result["report"].reason == "forced"


def test_logs_metrics_and_metadata_are_recorded(make_project: ProjectFactory) -> None:
    root = make_project(CHAIN)
    result = cairn.materialize(project=root)
    with closing(sqlite3.connect(root / ".cairn" / "cairn.db")) as db:
        logs = db.execute("SELECT message FROM logs WHERE run_id = ? AND asset = 'report'", (result.run_id,)).fetchall()
        metrics, metadata = db.execute(
            "SELECT metrics, metadata FROM materializations WHERE asset = 'report'"
        ).fetchone()
    assert logs == [("parity has 2 values",)]
    assert '"values":2.0' in metrics.replace(" ", "") and '"note":"ok"' in metadata.replace(" ", "")


def test_failure_skips_descendants_and_a_rerun_resumes(make_project: ProjectFactory) -> None:
    failing = CHAIN.replace("return sorted({n % 2 for n in numbers})", "raise ValueError('bad parity')")
    root = make_project(failing + "\n@asset\ndef side(numbers: list[int]) -> int:\n    return len(numbers)\n")
    result = cairn.materialize(project=root)
    assert not result.ok and result.status == "failed"
    assert statuses(result) == {"numbers": "executed", "parity": "failed", "report": "skipped", "side": "executed"}
    assert "ValueError: bad parity" in (result["parity"].error or "")
    assert result["report"].reason == "upstream failed: parity"
    set_pipeline(root, CHAIN + "\n@asset\ndef side(numbers: list[int]) -> int:\n    return len(numbers)\n")
    again = cairn.materialize(project=root)
    assert statuses(again) == {"numbers": "cached", "parity": "executed", "report": "executed", "side": "cached"}


def test_previous_failure_is_the_reason_when_nothing_changed(make_project: ProjectFactory) -> None:
    flaky = """
        from pathlib import Path
        from cairn import asset

        @asset
        def once() -> int:
            marker = Path(__file__).with_name("marker")
            if not marker.exists():
                marker.write_text("x")
                raise RuntimeError("first time fails")
            return 1
        """
    root = make_project(flaky)
    assert cairn.materialize(project=root)["once"].status == "failed"
    again = cairn.materialize(project=root)
    assert again["once"].status == "executed" and again["once"].reason == "previous attempt failed"


def test_a_deleted_object_is_recomputed(make_project: ProjectFactory) -> None:
    root = make_project(CHAIN)
    first = cairn.materialize(project=root)
    digest = first["report"].data_version
    assert digest is not None
    hexd = digest.removeprefix("b3:")
    (root / ".cairn" / "artifacts" / "objects" / hexd[:2] / hexd[2:]).unlink()
    result = cairn.materialize(project=root)
    assert result["report"].status == "executed" and result["report"].reason.startswith("stored output missing")


def test_profiles_coexist_with_the_default(make_project: ProjectFactory) -> None:
    root = make_project(CHAIN, extra="[profiles.big]\nnumbers = { n = 9 }\n")
    cairn.materialize(project=root)
    big = cairn.materialize(project=root, profile="big")
    assert big["numbers"].status == "executed"
    assert cairn.materialize(project=root).count("executed") == 0
    assert cairn.materialize(project=root, profile="big").count("executed") == 0
    with pytest.raises(UsageError, match="profile 'bgi' is not defined in cairn.toml. Did you mean 'big'"):
        cairn.materialize(project=root, profile="bgi")


def test_unknown_param_override_is_a_usage_error(make_project: ProjectFactory) -> None:
    root = make_project(CHAIN)
    with pytest.raises(UsageError, match="asset 'numbers' has no param 'm'"):
        cairn.materialize(project=root, params={"numbers": {"m": 1}})
    with pytest.raises(UsageError, match="asset 'numbrs' is not defined. Did you mean 'numbers'"):
        cairn.materialize(project=root, params={"numbrs": {"n": 1}})


def test_definition_errors_run_nothing(make_project: ProjectFactory) -> None:
    root = make_project(
        "from cairn import asset\n\n@asset\ndef a(b):\n    return 1\n\n@asset\ndef b(a):\n    return 1\n"
    )
    with pytest.raises(DefinitionError, match="cycle"):
        cairn.materialize(project=root)
    assert not (root / ".cairn" / "cairn.db").exists()


def test_sources_are_observed_and_late_changes_make_dependents_stale(make_project: ProjectFactory) -> None:
    pipeline = """
        from cairn import asset, source

        raw = source("raw", path="data/raw.json")

        @asset
        def total(raw: dict) -> int:
            return sum(raw["values"])
        """
    root = make_project(pipeline)
    (root / "data").mkdir()
    (root / "data" / "raw.json").write_text('{"values": [1, 2, 3]}')
    first = cairn.materialize(project=root)
    assert first.ok and cairn.load("total", project=root) == 6
    assert cairn.materialize(project=root).count("executed") == 0
    (root / "data" / "raw.json").write_text('{"values": [1, 2, 3, 4]}')
    result = cairn.materialize(project=root)
    assert statuses(result) == {"raw": "executed", "total": "executed"}
    assert result["total"].reason == "input changed: raw"
    assert cairn.load("total", project=root) == 10


def test_a_missing_source_fails_its_dependents_cleanly(make_project: ProjectFactory) -> None:
    pipeline = """
        from cairn import asset, source

        raw = source("raw", path="data/missing.csv")

        @asset
        def rows(raw) -> int:
            return raw.num_rows
        """
    root = make_project(pipeline)
    result = cairn.materialize(project=root)
    assert statuses(result) == {"raw": "failed", "rows": "skipped"}
    assert "data/missing.csv does not exist" in (result["raw"].error or "")


def test_dataframes_numpy_bytes_and_files_round_trip(make_project: ProjectFactory, tmp_path: Path) -> None:
    pipeline = """
        import numpy as np
        import pandas as pd
        import pyarrow as pa
        from cairn import Context, Files, asset

        @asset
        def frame() -> pd.DataFrame:
            return pd.DataFrame({"a": [1, 2, 3], "b": [0.5, 1.5, 2.5]})

        @asset
        def as_polars(frame: "pl.DataFrame") -> int:
            return frame.height

        @asset
        def table(frame: pa.Table) -> pa.Table:
            return frame.append_column("c", pa.array([1, 1, 1]))

        @asset
        def array() -> np.ndarray:
            return np.arange(6).reshape(2, 3)

        @asset
        def blob() -> bytes:
            return b"abc"

        @asset
        def folder(ctx: Context) -> Files:
            (ctx.workdir / "out").mkdir()
            (ctx.workdir / "out" / "x.txt").write_text("hello")
            return Files(ctx.workdir / "out")
        """
    root = make_project(pipeline)
    assert cairn.materialize(project=root).ok
    assert cairn.load("frame", project=root)["b"].tolist() == [0.5, 1.5, 2.5]
    assert cairn.load("as_polars", project=root) == 3
    assert cairn.load("table", project=root).column_names == ["a", "b", "c"]
    assert cairn.load("array", project=root).shape == (2, 3)
    assert cairn.load("blob", project=root) == b"abc"
    assert (cairn.load("folder", project=root) / "x.txt").read_text() == "hello"
    assert cairn.materialize(project=root).count("executed") == 0


def test_unsupported_return_type_names_io(make_project: ProjectFactory) -> None:
    root = make_project("from cairn import asset\n\n@asset\ndef thing() -> object:\n    return object()\n")
    result = cairn.materialize(project=root)
    assert result["thing"].status == "failed" and "io=" in (result["thing"].error or "")
    assert result["thing"].attempts == 1


def test_checkpoint_state_survives_a_failed_attempt(make_project: ProjectFactory) -> None:
    pipeline = """
        from cairn import Context, Retry, asset

        @asset(retry=Retry(max_attempts=2, backoff=0.01))
        def long_step(ctx: Context) -> int:
            done = ctx.checkpoint.load(0)
            if done == 0:
                ctx.checkpoint.save(5)
                raise RuntimeError("interrupted after saving")
            return done + ctx.attempt
        """
    root = make_project(pipeline)
    result = cairn.materialize(project=root)
    assert result["long_step"].attempts == 2 and cairn.load("long_step", project=root) == 7


def test_a_retry_starts_no_earlier_than_its_failed_attempt_ended(make_project: ProjectFactory) -> None:
    # Attempts that fail at once and retry without a pause: each start and end is read from one clock, so a
    # step's recorded times never run backwards (timelines and OpenLineage events are ordered by them).
    pipeline = "from cairn import Context, Retry, asset\n" + "".join(
        f"""
@asset(retry=Retry(max_attempts=2, backoff=0.0, jitter=False))
def step{i}(ctx: Context) -> int:
    if ctx.attempt == 1:
        raise RuntimeError("first attempt fails")
    return {i}
"""
        for i in range(40)
    )
    root = make_project(pipeline)
    result = cairn.materialize(project=root)
    assert {result[f"step{i}"].attempts for i in range(40)} == {2}
    with closing(sqlite3.connect(root / ".cairn" / "cairn.db")) as db:
        rows = db.execute("SELECT asset, started_at, finished_at FROM attempts ORDER BY asset, attempt").fetchall()
    times: dict[str, list[float]] = {}
    for name, started, finished in rows:
        times.setdefault(name, []).extend((started, finished))
    assert len(times) == 40 and all(t == sorted(t) for t in times.values()), times


def test_load_of_unknown_asset_suggests_names(make_project: ProjectFactory) -> None:
    root = make_project(CHAIN)
    cairn.materialize(project=root)
    with pytest.raises(UsageError, match="Did you mean 'report'"):
        cairn.load("reprot", project=root)


@pytest.mark.parametrize("executor", ["inline", "process"])
def test_a_damaged_input_is_quarantined_and_recomputed_not_served(make_project: ProjectFactory, executor: str) -> None:
    root = make_project(CHAIN, executor=executor)
    first = cairn.materialize(project=root)
    hexd = (first["parity"].data_version or "").removeprefix("b3:")
    obj = root / ".cairn" / "artifacts" / "objects" / hexd[:2] / hexd[2:]
    data = bytearray(obj.read_bytes())
    data[len(data) // 2] ^= 0xFF
    obj.chmod(0o644)
    obj.write_bytes(bytes(data))
    set_pipeline(root, CHAIN.replace('return {"parity": parity}', 'return {"parity": parity, "v": 2}'))
    result = cairn.materialize(project=root)
    assert result.ok, result
    assert result["parity"].status == "executed" and result["parity"].reason.startswith("stored output missing")
    assert result["report"].status == "executed"
    assert cairn.load("report", project=root) == {"parity": [0, 1], "v": 2}
    assert (root / ".cairn" / "artifacts" / "quarantine" / hexd).exists()


def test_adopting_a_profile_as_the_default_finds_everything_computed(make_project: ProjectFactory) -> None:
    root = make_project(CHAIN, extra="[profiles.big]\nnumbers = { n = 9 }\n")
    assert cairn.materialize(project=root, profile="big").count("executed") == 3
    set_pipeline(root, CHAIN.replace('params={"n": 5}', 'params={"n": 9}'))
    assert cairn.materialize(project=root).count("executed") == 0
