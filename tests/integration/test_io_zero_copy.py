"""Large Parquet objects of a local store are read from their mapped file and handed to pandas without a
copy: every read still checks size and BLAKE3, and no consumer's change reaches another consumer."""

from __future__ import annotations

import mmap
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import cairn
import cairn.io.mapped
import cairn.io.parquet
from cairn.errors import CorruptObject, MissingObject
from cairn.io import dump, load, reading
from cairn.io.frames import owned_pandas
from cairn.io.mapped import verified_buffer
from cairn.io.reading import BadInput, _TableCache, load_inputs
from cairn.storage.artifacts import LocalArtifactStore
from tests.conftest import ProjectFactory

ROWS = 200_000  # 1.6 MB a float column: above the size from which objects are mapped


def frame(rows: int = ROWS) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "x": rng.random(rows),
            "n": np.arange(rows, dtype="int64"),
            "small": np.arange(rows, dtype="uint8"),
            "s": [f"k{i % 7}" for i in range(rows)],
            "ts": pd.date_range("2026-06-01", periods=rows, freq="s"),
            "nullable": pd.array([None if i % 5 == 0 else i for i in range(rows)], dtype="Int64"),
        }
    )


@pytest.fixture
def store(tmp_path: Path) -> LocalArtifactStore:
    return LocalArtifactStore(tmp_path / "artifacts")


def flip_a_byte(path: str, where: float = 0.5) -> None:
    with open(path, "r+b") as fh:
        fh.seek(int(fh.seek(0, 2) * where))
        byte = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([byte[0] ^ 0x01]))


def test_a_large_local_object_is_read_from_its_mapped_file_not_copied(
    store: LocalArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = dump(frame(), store)
    assert stored.size >= cairn.io.mapped.MAPPED_MIN_BYTES
    monkeypatch.setattr(store, "read_bytes", lambda *a: pytest.fail("the intact object was copied"))
    pd.testing.assert_frame_equal(load(stored, store), frame())


@pytest.mark.parametrize("where", [0.0, 0.5, 0.999999])
def test_a_flipped_byte_is_detected_on_the_mapped_path(store: LocalArtifactStore, where: float) -> None:
    stored = dump(frame(), store)
    path = store.local_path(stored.data_version)
    assert path is not None
    flip_a_byte(path, where)
    with pytest.raises(CorruptObject, match=r"is corrupt: its \d+ bytes hash to b3:"):
        load(stored, store)
    with pytest.raises(BadInput, match="is corrupt"):
        load_inputs([reading_spec(stored)], store)


def test_a_truncated_or_missing_object_is_detected_on_the_mapped_path(store: LocalArtifactStore) -> None:
    stored = dump(frame(), store)
    path = store.local_path(stored.data_version)
    assert path is not None
    with open(path, "r+b") as fh:
        fh.truncate(stored.size - 1)
    with pytest.raises(CorruptObject, match="bytes but its record says"):
        load(stored, store)
    Path(path).unlink()
    with pytest.raises(MissingObject, match="is missing"):
        load(stored, store)


def test_a_table_read_from_a_mapped_object_owns_its_memory(store: LocalArtifactStore) -> None:
    """Nothing parsed refers to the file's pages, so the mapping goes once the read is done."""
    stored = dump(frame(), store)
    with verified_buffer(store, stored.data_version, stored.size) as data:
        assert isinstance(data, mmap.mmap)
        table = cairn.io.parquet.read_parquet(data)
        pages = np.frombuffer(data, dtype="uint8")
        start, end = pages.ctypes.data, pages.ctypes.data + pages.size
        del pages
    buffers = [b for column in table.columns for chunk in column.chunks for b in chunk.buffers() if b is not None]
    assert buffers and not any(start <= b.address < end for b in buffers)
    assert table.num_rows == ROWS


def test_an_owned_frame_equals_to_pandas_and_shares_the_numeric_columns(store: LocalArtifactStore) -> None:
    table = pa.Table.from_pandas(frame())
    table = cairn.io.parquet.read_parquet(_parquet_bytes(table))  # a parsed table: its own, mutable memory
    expected = table.to_pandas()
    x = table.column("x").chunk(0).buffers()[1]
    owned = owned_pandas(table)
    pd.testing.assert_frame_equal(owned, expected)
    assert np.shares_memory(owned["x"].to_numpy(), np.frombuffer(x, dtype="float64"))
    for column in owned.columns:  # every column takes writes, as a frame from to_pandas() does
        owned.loc[3, column] = owned.loc[4, column]
    assert owned.loc[3, "x"] == owned.loc[4, "x"]


def test_an_owned_frame_keeps_labels_index_and_attrs(store: LocalArtifactStore) -> None:
    source = pd.DataFrame(np.ones((ROWS, 3)), index=pd.RangeIndex(5, 5 + 2 * ROWS, 2, name="row"))
    source.attrs["origin"] = "test"
    keyed = pd.DataFrame({"v": np.arange(ROWS, dtype="float32")}, index=pd.Index(np.arange(ROWS) * 3, name="key"))
    for value in (source, keyed, source.set_axis(pd.MultiIndex.from_tuples([("a", 1), ("a", 2), ("b", 1)]), axis=1)):
        stored = dump(value, store)
        pd.testing.assert_frame_equal(load(stored, store), value)
        assert load(stored, store).attrs == value.attrs


def test_every_frame_read_back_takes_the_writes_a_to_pandas_frame_takes(
    store: LocalArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The frames of the serializer tests, read through the owned path whatever their size: a column takes a
    write in place wherever the same column of ``to_pandas()`` does (pyarrow gives categorical codes
    read-only either way)."""
    from tests.unit.test_io import pandas_frames

    monkeypatch.setattr(cairn.io.parquet, "SMALL_TABLE_BYTES", 0)
    monkeypatch.setattr(cairn.io.mapped, "MAPPED_MIN_BYTES", 0)
    for value in [*pandas_frames(), frame(1000)]:
        stored = dump(value, store)
        loaded = load(stored, store)
        pd.testing.assert_frame_equal(loaded, value)
        reference = cairn.io.parquet.read_object(stored, store).to_pandas()
        for j in range(loaded.shape[1] if len(loaded) else 0):
            if _takes_a_write(reference, j):
                assert _takes_a_write(loaded, j), f"column {loaded.columns[j]!r} of {value.dtypes.to_dict()}"


def _takes_a_write(frame: pd.DataFrame, j: int) -> bool:
    try:
        frame.iloc[0, j] = frame.iloc[-1, j]
    except ValueError:
        return False
    return True


INPLACE = f"""
import numpy as np
import pandas as pd
import pyarrow as pa
from cairn import asset

@asset
def base() -> pd.DataFrame:
    return pd.DataFrame({{"x": np.arange({ROWS}, dtype="float64"), "n": np.arange({ROWS})}})

@asset
def mutates(base: pd.DataFrame) -> dict:
    base.loc[0, "x"] = -1.0
    base["n"] *= 2
    base.iloc[1, 0] = -2.0
    return {{"x0": float(base["x"].iloc[0]), "n1": int(base["n"].iloc[1])}}

@asset
def also_mutates(base: pd.DataFrame, mutates: dict) -> dict:
    seen = {{"x0": float(base["x"].iloc[0]), "x1": float(base["x"].iloc[1]), "n1": int(base["n"].iloc[1])}}
    base.loc[0, "x"] = -3.0
    return seen

@asset
def as_arrow(base: pa.Table, also_mutates: dict) -> dict:
    return {{"x0": base.column("x")[0].as_py(), "n1": base.column("n")[1].as_py()}}
"""


@pytest.mark.parametrize("cached", [False, True], ids=["owned", "cached"])
@pytest.mark.parametrize("executor", ["inline", "process"])
def test_a_consumer_changing_its_large_input_in_place_changes_nothing_for_the_next(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch, executor: str, cached: bool
) -> None:
    """Owned: nothing is cached, every table is its consumer's own and shares its memory with the frame.
    Cached: the worker keeps the table for later steps, and each step gets a copy."""
    monkeypatch.setattr(reading, "_tables", _TableCache(64 << 20 if cached else 0))
    root = make_project(INPLACE, executor=executor)
    assert cairn.materialize(project=root).ok
    assert cairn.load("mutates", project=root) == {"x0": -1.0, "n1": 2}
    assert cairn.load("also_mutates", project=root) == {"x0": 0.0, "x1": 1.0, "n1": 1}
    assert cairn.load("as_arrow", project=root) == {"x0": 0.0, "n1": 1}
    assert cairn.load("base", project=root)["x"].iloc[0] == 0.0


SOURCE = """
import pandas as pd
import pyarrow as pa
from cairn import asset, source

raw = source("raw", path="data/raw.parquet")

@asset
def doubles(raw: pd.DataFrame) -> dict:
    raw.loc[1, "x"] = 99.0  # in place, into the memory the frame got from the parsed table
    return {"x1": float(raw["x"].iloc[1])}

@asset
def reads(raw: pd.DataFrame, doubles: dict) -> dict:
    return {"x1": float(raw["x"].iloc[1]), "rows": len(raw)}

@asset
def as_arrow(raw: pa.Table) -> int:
    return raw.num_rows
"""


def test_a_large_parquet_source_is_read_mapped_and_each_consumer_gets_its_own_frame(
    make_project: ProjectFactory,
) -> None:
    import pyarrow.parquet as pq

    root = make_project(SOURCE)
    (root / "data").mkdir()
    pq.write_table(pa.table({"x": np.arange(ROWS, dtype="float64")}), root / "data" / "raw.parquet")
    assert (root / "data" / "raw.parquet").stat().st_size >= cairn.io.mapped.MAPPED_MIN_BYTES
    result = cairn.materialize(project=root)
    assert result.ok, result
    assert cairn.load("doubles", project=root) == {"x1": 99.0}
    assert cairn.load("reads", project=root) == {"x1": 1.0, "rows": ROWS}
    assert cairn.load("as_arrow", project=root) == ROWS


def reading_spec(stored: object) -> object:
    from dataclasses import dataclass

    @dataclass
    class Spec:
        param: str
        stored: object
        annotation: str = "pd.DataFrame"
        key: str | None = None

    return Spec("df", stored)


def _parquet_bytes(table: pa.Table) -> bytes:
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return bytes(sink.getvalue())
