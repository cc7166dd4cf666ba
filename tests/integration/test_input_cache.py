"""The worker's cache of parsed Parquet inputs: bounded, and no step sees another step's changes."""

from __future__ import annotations

import pyarrow as pa
import pytest

import cairn
from cairn.io import reading
from cairn.io.reading import _TableCache
from tests.conftest import ProjectFactory

SHARED_INPUT = """
import pandas as pd
import polars as pl
from cairn import asset

@asset
def base() -> pd.DataFrame:
    return pd.DataFrame({"x": [1, 2, 3], "y": [0.5, 1.5, 2.5]})

@asset
def mutates(base: pd.DataFrame) -> dict:
    base["x"] += 100
    del base["y"]
    return {"sum": int(base["x"].sum())}

@asset
def reads(base: pd.DataFrame, mutates: dict) -> dict:
    return {"sum": int(base["x"].sum()), "columns": list(base.columns)}

@asset
def as_polars(base: pl.DataFrame, reads: dict) -> dict:
    return {"sum": int(base["x"].sum())}
"""


@pytest.mark.parametrize("executor", ["inline", "thread", "process"])
def test_a_step_that_changes_its_input_in_place_does_not_change_what_the_next_step_reads(
    make_project: ProjectFactory, executor: str
) -> None:
    root = make_project(SHARED_INPUT, executor=executor)
    result = cairn.materialize(project=root)
    assert result.ok
    assert cairn.load("mutates", project=root) == {"sum": 306}
    assert cairn.load("reads", project=root) == {"sum": 6, "columns": ["x", "y"]}
    assert cairn.load("as_polars", project=root) == {"sum": 6}
    assert reading._tables.get(result["base"].data_version or "") is None  # released with the run


def table(rows: int) -> pa.Table:
    return pa.table({"v": pa.array(range(rows), pa.int64())})  # 8 bytes a row


def test_the_cache_drops_the_least_recently_used_tables_beyond_its_size() -> None:
    cache = _TableCache(max_bytes=8 * 400)
    for name in ("a", "b", "c"):
        cache.put(name, table(100))
    assert cache.get("a") is not None  # now the most recently used
    cache.put("d", table(100))
    cache.put("e", table(100))
    assert cache.get("b") is None
    assert all(cache.get(name) is not None for name in ("a", "c", "d", "e"))


def test_a_table_larger_than_a_quarter_of_the_cache_is_not_kept() -> None:
    cache = _TableCache(max_bytes=8 * 400)
    cache.put("small", table(100))
    cache.put("large", table(101))
    assert cache.get("large") is None and cache.get("small") is not None


def test_a_worker_reads_and_parses_an_input_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import pandas as pd

    from cairn.io import dump
    from cairn.storage.memory import MemoryArtifactStore

    monkeypatch.setattr(reading, "_tables", _TableCache(1 << 20))
    store = MemoryArtifactStore()
    stored = dump(pd.DataFrame({"x": [1, 2, 3]}), store)
    reads: list[str] = []
    read_bytes = store.read_bytes
    monkeypatch.setattr(store, "read_bytes", lambda digest, size: reads.append(digest) or read_bytes(digest, size))
    first, second = reading._load_input(stored, store), reading._load_input(stored, store)
    assert reads == [stored.data_version]
    pd.testing.assert_frame_equal(first, second)
    assert first is not second
