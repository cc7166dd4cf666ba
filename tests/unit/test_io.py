"""Serializers: every type round-trips, equal values give equal data versions, opt-ins and refusals."""

from __future__ import annotations

import importlib.util
import math
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

import cairn.io.parquet
from cairn.core.records import StoredValue
from cairn.errors import CorruptObject, MissingObject, SerializationError
from cairn.io import Files, dump, load
from cairn.io.reading import SOURCE_FORMAT, BadInput, convert_table, load_inputs, load_stored
from cairn.io.serializers import IO_NAMES
from cairn.storage.artifacts import LocalArtifactStore
from cairn.storage.memory import MemoryArtifactStore


@dataclass(frozen=True)
class Model:
    """A stand-in for a trained model: only storable with an explicit pickling opt-in."""

    weights: tuple[float, ...]
    name: str


UNPICKLED: list[str] = []


def _record_unpickling() -> str:
    UNPICKLED.append("loaded")
    return "payload ran"


class Payload:
    """Runs code when unpickled; a corrupted object must never get that far."""

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return (_record_unpickling, ())


@pytest.fixture
def store() -> MemoryArtifactStore:
    return MemoryArtifactStore()


@pytest.fixture(autouse=True)
def private_tempdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files from non-local stores are rebuilt under the temp directory: keep that in the test's folder."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()


def round_trip(value: object, store: MemoryArtifactStore, io: str | None = None) -> tuple[StoredValue, Any]:
    stored = dump(value, store, io)
    assert store.size(stored.data_version) == stored.size
    return stored, load(stored, store)


def pandas_frames() -> list[pd.DataFrame]:
    return [
        pd.DataFrame(
            {
                "user_id": np.arange(5, dtype="int64"),
                "price": [1.5, float("nan"), 0.0, -2.25, 1e300],
                "name": ["a", "b", None, "ü", ""],
                "flag": [True, False, True, True, False],
                "ts": pd.date_range("2026-06-01", periods=5, freq="h", tz="Europe/Paris"),
                "segment": pd.Categorical(["x", "y", "x", "z", "y"]),
            }
        ),
        pd.DataFrame({"a": [1, 2]}, index=pd.Index(["k1", "k2"], name="key")),
        pd.DataFrame({"a": [1.0, 2.0]}, index=pd.MultiIndex.from_tuples([(1, "a"), (2, "b")], names=["i", "j"])),
        pd.DataFrame({"a": [1, 2, 3]}).iloc[1:],
        pd.DataFrame(np.ones((2, 3))),
        pd.DataFrame({"empty": pd.Series([], dtype="float64")}),
    ]


@pytest.fixture(params=["small", "large"])
def table_reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both ways Parquet is read back: on the calling thread (small objects) and with read_table (large)."""
    if request.param == "large":
        monkeypatch.setattr(cairn.io.parquet, "SMALL_TABLE_BYTES", 0)


@pytest.mark.parametrize("frame", pandas_frames())
@pytest.mark.usefixtures("table_reader")
def test_pandas_dataframe_round_trips_as_parquet(store: MemoryArtifactStore, frame: pd.DataFrame) -> None:
    stored, loaded = round_trip(frame, store)
    assert (stored.format, stored.pytype) == ("parquet", "pandas")
    pd.testing.assert_frame_equal(loaded, frame)


@pytest.mark.usefixtures("table_reader")
def test_polars_dataframe_round_trips_as_parquet(store: MemoryArtifactStore) -> None:
    frame = pl.DataFrame(
        {"id": [1, 2, None], "x": [0.5, None, 2.0], "s": ["a", None, "c"], "tags": [[1], [], [2, 3]]},
        schema_overrides={"id": pl.Int32},
    )
    stored, loaded = round_trip(frame, store)
    assert (stored.format, stored.pytype) == ("parquet", "polars")
    assert isinstance(loaded, pl.DataFrame)
    assert loaded.schema == frame.schema
    assert loaded.equals(frame)


@pytest.mark.usefixtures("table_reader")
def test_arrow_table_round_trips_as_parquet(store: MemoryArtifactStore) -> None:
    table = pa.table({"a": pa.array([1, None, 3], pa.int16()), "b": pa.array(["x", "y", None])})
    stored, loaded = round_trip(table, store)
    assert (stored.format, stored.pytype) == ("parquet", "arrow")
    assert loaded.equals(table)
    assert loaded.schema == table.schema


@pytest.mark.parametrize(
    "array",
    [
        np.arange(12, dtype="float32").reshape(3, 4),
        np.array(3.5),
        np.array(["ab", "ü"], dtype="<U2"),
        np.array([True, False]),
        np.array(["2026-06-01"], dtype="datetime64[D]"),
        np.zeros(3, dtype=[("x", "<i4"), ("y", "<f8")]),
        np.arange(20).reshape(4, 5)[::2, 1:4],
        np.asfortranarray(np.arange(6).reshape(2, 3)),
        np.empty((0, 3)),
    ],
)
def test_numpy_array_round_trips_as_npy(store: MemoryArtifactStore, array: np.ndarray[Any, Any]) -> None:
    stored, loaded = round_trip(array, store)
    assert (stored.format, stored.pytype) == ("npy", "numpy")
    assert loaded.dtype == array.dtype
    np.testing.assert_array_equal(loaded, array)


@pytest.mark.parametrize(
    "value",
    [
        {"b": [1, 2.5, None, True, "ü"], "a": {"nested": {}}},
        [],
        {},
        "text",
        0,
        10**40,
        -0.0,
        1e-300,
        False,
        None,
    ],
)
def test_json_values_round_trip(store: MemoryArtifactStore, value: object) -> None:
    stored, loaded = round_trip(value, store)
    assert (stored.format, stored.pytype) == ("json", "json")
    assert loaded == value
    assert type(loaded) is type(value)


def test_tuples_are_stored_as_json_lists(store: MemoryArtifactStore) -> None:
    _, loaded = round_trip({"pair": (1, (2, 3))}, store)
    assert loaded == {"pair": [1, [2, 3]]}


def test_json_is_canonical_sorted_and_compact(store: MemoryArtifactStore) -> None:
    stored = dump({"b": 1, "a": [1.5, "é"]}, store)
    assert store.read_bytes(stored.data_version) == '{"a":[1.5,"é"],"b":1}'.encode()


def test_bytes_round_trip_raw(store: MemoryArtifactStore) -> None:
    stored, loaded = round_trip(b"\x00\xffraw", store)
    assert (stored.format, stored.pytype, loaded) == ("bytes", "bytes", b"\x00\xffraw")
    assert store.read_bytes(stored.data_version) == b"\x00\xffraw"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_any_json_value_round_trips_and_key_order_does_not_matter(value: object) -> None:
    store = MemoryArtifactStore()
    stored = dump(value, store)
    assert load(stored, store) == value
    if isinstance(value, dict):
        reordered = dict(reversed(list(value.items())))
        assert dump(reordered, store).data_version == stored.data_version


def test_equal_values_give_equal_data_versions(store: MemoryArtifactStore) -> None:
    """Early cutoff: a step that re-runs and returns an equal value must leave its downstream cached."""
    for make in (
        lambda: pandas_frames()[0],
        lambda: pl.DataFrame({"a": [1, 2], "s": ["x", "y"]}),
        lambda: pa.table({"a": list(range(1000))}),
        lambda: np.linspace(0, 1, 50),
        lambda: {"metrics": {"auc": 0.9, "rows": 10}},
    ):
        assert dump(make(), store).data_version == dump(make(), store).data_version


def test_layout_does_not_change_the_data_version(store: MemoryArtifactStore) -> None:
    array = np.arange(12).reshape(3, 4)
    assert dump(np.asfortranarray(array), store) == dump(array, store)
    table = pa.table({"a": list(range(300_000))})
    chunked = pa.concat_tables([table.slice(0, 1000), table.slice(1000)])
    assert dump(chunked, store) == dump(table, store)


def test_different_values_give_different_data_versions(store: MemoryArtifactStore) -> None:
    assert dump({"a": 1}, store).data_version != dump({"a": 1.0}, store).data_version
    assert dump(pd.DataFrame({"a": [1]}), store).data_version != dump(pd.DataFrame({"a": [2]}), store).data_version


def test_unsupported_type_error_names_the_type_and_io(store: MemoryArtifactStore) -> None:
    with pytest.raises(SerializationError, match=r"type test_io\.Model.*io=\"pickle\".*joblib.*skops"):
        dump(Model((1.0,), "m"), store)
    with pytest.raises(SerializationError, match=r"value\['params'\] is a set.*io=\"pickle\""):
        dump({"params": {1, 2}}, store)
    with pytest.raises(SerializationError, match=r"the key 1 of value is a int"):
        dump({1: "a"}, store)
    assert list(store.digests()) == []


def test_numpy_scalars_and_masked_arrays_are_not_silently_converted(store: MemoryArtifactStore) -> None:
    with pytest.raises(SerializationError, match=r"numpy\.float64.*io="):
        dump({"auc": np.float64(0.5)}, store)
    with pytest.raises(SerializationError, match=r"MaskedArray.*io="):
        dump(np.ma.masked_array([1, 2], mask=[False, True]), store)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -math.inf])
def test_nan_and_infinity_are_refused_in_json(store: MemoryArtifactStore, bad: float) -> None:
    with pytest.raises(SerializationError, match=r"value\['metrics'\]\[1\] = .*NaN or infinity.*None"):
        dump({"metrics": [0.5, bad]}, store)
    with pytest.raises(SerializationError, match="NaN or infinity"):
        dump(bad, store, io="json")
    assert list(store.digests()) == []


def test_object_arrays_are_refused_with_the_pickle_hint(store: MemoryArtifactStore) -> None:
    with pytest.raises(SerializationError, match=r"dtype object.*io=\"pickle\""):
        dump(np.array([{"a": 1}, None], dtype=object), store)


def test_pandas_frames_that_parquet_cannot_hold_are_refused(store: MemoryArtifactStore) -> None:
    with pytest.raises(SerializationError, match=r"pandas DataFrame as Parquet.*io=\"pickle\""):
        dump(pd.DataFrame({"mixed": [1, "a", b"b"]}), store)
    with pytest.raises(SerializationError, match=r"column names mix types \(int, str\)"):
        dump(pd.DataFrame({1: [1], "b": [2]}), store)
    assert list(store.digests()) == []


def test_io_forces_a_format(store: MemoryArtifactStore) -> None:
    assert dump([1, 2], store, io="json").format == "json"
    assert dump(bytearray(b"ab"), store, io="bytes") == dump(b"ab", store)
    assert load(dump(memoryview(b"ab"), store, io="bytes"), store) == b"ab"
    assert dump(np.arange(3), store, io="npy").format == "npy"
    assert dump(pa.table({"a": [1]}), store, io="parquet").pytype == "arrow"


@pytest.mark.parametrize(
    ("io", "value", "accepted"),
    [("parquet", {"a": [1]}, "DataFrames"), ("npy", [1, 2], "numpy arrays"), ("bytes", "text", "bytes")],
)
def test_io_refuses_values_its_format_cannot_hold(
    store: MemoryArtifactStore, io: str, value: object, accepted: str
) -> None:
    with pytest.raises(SerializationError, match=rf"io='{io}' cannot store a value of type .*{accepted}"):
        dump(value, store, io=io)


def test_unknown_io_lists_the_valid_names(store: MemoryArtifactStore) -> None:
    with pytest.raises(SerializationError, match=r"unknown serializer io='pickel'.*'json'.*'pickle'.*'skops'"):
        dump({"a": 1}, store, io="pickel")
    assert set(IO_NAMES) == {"json", "parquet", "npy", "bytes", "pickle", "joblib", "skops"}


def test_pickle_opt_in_round_trips_any_object(store: MemoryArtifactStore) -> None:
    model = Model((0.5, -1.0), "ridge")
    stored, loaded = round_trip(model, store, io="pickle")
    assert (stored.format, stored.pytype) == ("pickle", "test_io.Model")
    assert loaded == model
    assert dump(model, store, io="pickle") == stored


def test_a_corrupted_pickle_is_refused_before_unpickling(store: MemoryArtifactStore) -> None:
    stored = dump(Model((1.0,), "good"), store, io="pickle")
    store.objects[stored.data_version] = pickle.dumps(Payload())
    UNPICKLED.clear()
    with pytest.raises(CorruptObject, match=stored.data_version):
        load(stored, store)
    assert UNPICKLED == []


def test_a_pickle_with_another_recorded_size_is_refused(store: MemoryArtifactStore) -> None:
    stored = dump(Model((1.0,), "good"), store, io="pickle")
    wrong = StoredValue(stored.data_version, stored.size + 1, stored.format, stored.pytype)
    with pytest.raises(CorruptObject, match="bytes but its record says"):
        load(wrong, store)


def test_unpicklable_values_fail_clearly_and_publish_nothing(store: MemoryArtifactStore) -> None:
    with pytest.raises(SerializationError, match=r"cannot store a function with io='pickle'.*lambdas"):
        dump(lambda x: x, store, io="pickle")
    assert list(store.digests()) == []


def test_joblib_opt_in_round_trips(store: MemoryArtifactStore) -> None:
    pytest.importorskip("joblib")
    value = {"weights": np.arange(4.0), "name": "m"}
    stored, loaded = round_trip(value, store, io="joblib")
    assert stored.format == "joblib"
    np.testing.assert_array_equal(loaded["weights"], value["weights"])


def test_skops_opt_in_says_how_to_install_it_when_missing(store: MemoryArtifactStore) -> None:
    if importlib.util.find_spec("skops") is not None:
        pytest.skip("skops is installed")
    with pytest.raises(SerializationError, match=r"io='skops' needs the skops package.*pip install skops"):
        dump({"a": 1}, store, io="skops")


def test_unknown_format_is_refused_on_load(store: MemoryArtifactStore) -> None:
    digest, size = store.put_bytes(b"{}")
    with pytest.raises(SerializationError, match=r"format 'feather' is not one this cairn knows.*Upgrade"):
        load(StoredValue(digest, size, "feather", "pandas"), store)


def make_tree(root: Path) -> Path:
    (root / "model" / "sub").mkdir(parents=True)
    (root / "model" / "weights.bin").write_bytes(bytes(range(256)) * 100)
    (root / "model" / "sub" / "config.json").write_text('{"k": 1}')
    (root / "model" / "empty.txt").write_bytes(b"")
    return root / "model"


def tree_contents(root: Path) -> dict[str, bytes]:
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in root.rglob("*") if path.is_file()}


def test_files_directory_round_trips(store: MemoryArtifactStore, tmp_path: Path) -> None:
    source = make_tree(tmp_path / "out")
    stored = dump(Files(source), store)
    assert (stored.format, stored.pytype) == ("files", "files")
    loaded = load(stored, store)
    assert isinstance(loaded, Path)
    assert tree_contents(loaded) == tree_contents(source)
    assert load(stored, store) == loaded


def test_files_manifest_lists_each_file_sorted_and_is_the_data_version(
    store: MemoryArtifactStore, tmp_path: Path
) -> None:
    stored = dump(Files(str(make_tree(tmp_path / "out"))), store)
    manifest = load(StoredValue(stored.data_version, stored.size, "json", "json"), store)
    assert isinstance(manifest, dict)
    assert list(manifest) == ["empty.txt", "sub/config.json", "weights.bin"]
    assert manifest["sub/config.json"]["size"] == 8
    assert store.read_bytes(manifest["sub/config.json"]["digest"]) == b'{"k": 1}'


def test_equal_directories_give_equal_data_versions(store: MemoryArtifactStore, tmp_path: Path) -> None:
    first = dump(Files(make_tree(tmp_path / "a")), store)
    assert dump(Files(make_tree(tmp_path / "b")), store) == first
    (tmp_path / "b" / "model" / "empty.txt").write_bytes(b"changed")
    assert dump(Files(tmp_path / "b" / "model"), store) != first


def test_a_single_file_round_trips_to_a_file_of_the_same_name(store: MemoryArtifactStore, tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"onnx bytes")
    stored = dump(Files(path), store)
    assert stored.pytype == "file"
    loaded = load(stored, store)
    assert isinstance(loaded, Path)
    assert (loaded.name, loaded.read_bytes()) == ("model.onnx", b"onnx bytes")


def test_files_from_a_local_store_are_rebuilt_under_its_root(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "artifacts")
    stored = dump(Files(make_tree(tmp_path / "out")), store)
    loaded = load(stored, store)
    assert loaded == tmp_path / "artifacts" / "files" / stored.data_version.removeprefix("b3:")
    assert [p.name for p in (tmp_path / "artifacts" / "files").iterdir()] == [loaded.name]


def test_files_of_a_missing_path_are_refused(store: MemoryArtifactStore, tmp_path: Path) -> None:
    with pytest.raises(SerializationError, match=r"cairn.Files\(.*nowhere'\): no such file or directory"):
        dump(Files(tmp_path / "nowhere"), store)


def test_a_hostile_manifest_cannot_write_outside_the_cache(store: MemoryArtifactStore, tmp_path: Path) -> None:
    digest, size = store.put_bytes(b"pwned")
    manifest = dump({"../../escape.txt": {"digest": digest, "size": size}}, store)
    with pytest.raises(SerializationError, match=r"unsafe path '\.\./\.\./escape\.txt'"):
        load(StoredValue(manifest.data_version, manifest.size, "files", "files"), store)
    assert not list(tmp_path.rglob("escape.txt"))


def test_a_source_is_read_back_by_its_file_type(store: MemoryArtifactStore) -> None:
    def source(data: bytes, suffix: str) -> StoredValue:
        digest, size = store.put_bytes(data)
        return StoredValue(digest, size, SOURCE_FORMAT, suffix)

    assert load_stored(source(b'{"a": [1, 2]}', ".json"), store) == {"a": [1, 2]}
    assert load_stored(source(b"x,y\n1,a\n", ".csv"), store).to_pydict() == {"x": [1], "y": ["a"]}
    assert load_stored(source(b"select 1\n", ".sql"), store) == "select 1\n"
    assert load_stored(source(b"\x00\x01", ".bin"), store) == b"\x00\x01"


def test_a_damaged_source_is_refused_before_it_is_parsed(store: MemoryArtifactStore) -> None:
    digest, size = store.put_bytes(b'{"a": 1}')
    store.objects[digest] = b'{"a": 2}'
    with pytest.raises(CorruptObject):
        load_stored(StoredValue(digest, size, SOURCE_FORMAT, ".json"), store)


@pytest.mark.parametrize(
    ("annotation", "kind"),
    [("pd.DataFrame", pd.DataFrame), ("polars.DataFrame", pl.DataFrame), ("pa.Table", pa.Table)],
)
def test_a_table_is_converted_to_the_type_its_parameter_is_annotated_with(annotation: str, kind: type) -> None:
    for value in (pd.DataFrame({"x": [1, 2]}), pl.DataFrame({"x": [1, 2]}), pa.table({"x": [1, 2]})):
        converted = convert_table(value, annotation)
        assert isinstance(converted, kind)
        values = converted["x"].to_pylist() if kind is pa.Table else list(converted["x"])
        assert values == [1, 2]


def test_a_table_without_a_table_annotation_is_left_as_it_is() -> None:
    frame = pd.DataFrame({"x": [1]})
    assert convert_table(frame, "") is frame
    assert convert_table(frame, "Any") is frame
    assert convert_table({"x": 1}, "pl.DataFrame") == {"x": 1}


@dataclass(frozen=True)
class Spec:
    """An input to load, as `cairn.engine.jobs.InputSpec` has it."""

    param: str
    stored: StoredValue
    annotation: str = ""
    key: str | None = None


def test_windowed_inputs_load_as_a_dict_by_partition_key_converted_per_value(store: MemoryArtifactStore) -> None:
    day1, day2 = dump(pd.DataFrame({"x": [1]}), store), dump(pd.DataFrame({"x": [2]}), store)
    specs = [
        Spec("days", day1, "dict[str, pl.DataFrame]", "2026-06-01"),
        Spec("days", day2, "dict[str, pl.DataFrame]", "2026-06-02"),
        Spec("n", dump(3, store), "int"),
    ]
    loaded = load_inputs(specs, store)
    assert loaded["n"] == 3
    assert sorted(loaded["days"]) == ["2026-06-01", "2026-06-02"]
    assert all(isinstance(v, pl.DataFrame) for v in loaded["days"].values())
    assert loaded["days"]["2026-06-02"]["x"].to_list() == [2]


def test_a_missing_input_names_its_data_version(store: MemoryArtifactStore) -> None:
    stored = dump({"a": 1}, MemoryArtifactStore())
    with pytest.raises(BadInput) as raised:
        load_inputs([Spec("a", stored)], store)
    assert raised.value.version == stored.data_version
    assert isinstance(raised.value.error, MissingObject)
