"""Properties of `cairn.hashing.hash_struct`, the canonical hash behind every cache key (STYLE rule 5).

Observed and pinned behaviour:

- dicts and sets hash the same whatever their insertion order;
- the encoding is typed and length-prefixed: ``["ab", "c"]`` != ``["a", "bc"]``, ``1`` != ``"1"`` != ``1.0``
  != ``True``, ``"x"`` != ``b"x"``, ``0.0`` != ``-0.0``, ``[]`` != ``None`` != ``""``;
- a tuple hashes exactly like the list with the same items (tuples are encoded as lists), while a set is
  not a list;
- every NaN hashes the same;
- values of other types are refused with a `TypeError` rather than hashed by ``repr``.
"""

from __future__ import annotations

import math
import random
from enum import IntEnum, StrEnum
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cairn.core.keys import SEED_TAG, STEP_KEY_TAG, StepId, cache_key, derive_seed
from cairn.hashing import digest_bytes, encode, hash_struct

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
    | st.binary(max_size=8)
)
keys = st.text(max_size=6) | st.integers(-5, 5)
structures = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(keys, inner, max_size=4)
        | st.frozensets(st.text(max_size=4) | st.integers(), max_size=4)
    ),
    max_leaves=12,
)


def canon(value: Any) -> Any:
    """What the hash must distinguish: a tagged, order-free model of the value (tuples are lists)."""
    if value is None:
        return ("N",)
    if value is True or value is False:
        return ("B", value)
    if isinstance(value, int):
        return ("i", value)
    if isinstance(value, float):
        return ("f", "nan" if math.isnan(value) else value.hex())
    if isinstance(value, str):
        return ("s", value)
    if isinstance(value, bytes):
        return ("b", value)
    if isinstance(value, list | tuple):
        return ("l", tuple(canon(v) for v in value))
    if isinstance(value, dict):
        return ("d", frozenset((canon(k), canon(v)) for k, v in value.items()))
    assert isinstance(value, set | frozenset)
    return ("e", frozenset(canon(v) for v in value))


def reordered(value: Any, rng: random.Random) -> Any:
    """The same structure with every dict and set rebuilt in a shuffled insertion order."""
    if isinstance(value, dict):
        items = [(k, reordered(v, rng)) for k, v in value.items()]
        rng.shuffle(items)
        return dict(items)
    if isinstance(value, frozenset | set):
        items = list(value)
        rng.shuffle(items)
        return frozenset(items)
    if isinstance(value, list):
        return [reordered(v, rng) for v in value]
    if isinstance(value, tuple):
        return tuple(reordered(v, rng) for v in value)
    return value


def as_lists(value: Any) -> Any:
    """The same structure with every tuple turned into a list."""
    if isinstance(value, list | tuple):
        return [as_lists(v) for v in value]
    if isinstance(value, dict):
        return {k: as_lists(v) for k, v in value.items()}
    return value


@settings(max_examples=100)
@given(st.dictionaries(st.text(max_size=10), structures, max_size=8), st.randoms(use_true_random=False))
def test_hash_of_a_dict_does_not_depend_on_insertion_order(value: dict[str, Any], rng: random.Random) -> None:
    shuffled = reordered(value, rng)
    assert hash_struct(shuffled) == hash_struct(value)
    assert hash_struct(dict(reversed(list(value.items())))) == hash_struct(value)


@settings(max_examples=100)
@given(structures, st.randoms(use_true_random=False))
def test_hash_of_nested_dicts_and_sets_does_not_depend_on_insertion_order(value: Any, rng: random.Random) -> None:
    assert hash_struct(reordered(value, rng)) == hash_struct(value)


@settings(max_examples=100)
@given(structures, structures)
def test_two_structures_hash_equal_exactly_when_their_typed_models_are_equal(a: Any, b: Any) -> None:
    assert (hash_struct(a) == hash_struct(b)) == (canon(a) == canon(b))


@settings(max_examples=100)
@given(structures)
def test_a_tuple_hashes_like_the_list_of_its_items(value: Any) -> None:
    assert hash_struct(as_lists(value)) == hash_struct(value)
    assert hash_struct((value, value)) == hash_struct([value, value])


@settings(max_examples=100)
@given(st.lists(st.text(max_size=6), min_size=1, max_size=6), st.data())
def test_moving_characters_between_list_items_changes_the_hash(parts: list[str], data: st.DataObject) -> None:
    joined = "".join(parts)
    cut = data.draw(st.integers(0, len(joined)), label="cut")
    other = [joined[:cut], joined[cut:]]
    assert (hash_struct(parts) == hash_struct(other)) == (parts == other)
    assert hash_struct(parts) != hash_struct(joined)


@settings(max_examples=100)
@given(st.integers())
def test_an_int_never_hashes_like_its_text_its_float_or_a_bool(number: int) -> None:
    assert hash_struct(number) != hash_struct(str(number))
    assert hash_struct([number]) != hash_struct([str(number)])
    if abs(number) < 2**53:
        assert hash_struct(number) != hash_struct(float(number))
    assert hash_struct(number) != hash_struct(number == 1)


@settings(max_examples=100)
@given(st.lists(st.integers(), max_size=5))
def test_a_set_does_not_hash_like_the_list_of_its_items(items: list[int]) -> None:
    assert hash_struct(frozenset(items)) != hash_struct(sorted(set(items)))
    assert hash_struct(set(items)) == hash_struct(frozenset(items))


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (["ab", "c"], ["a", "bc"]),
        ([["a"], "b"], ["a", ["b"]]),
        ({"a": "bc"}, {"ab": "c"}),
        ({1: "x"}, {"1": "x"}),
        (1, "1"),
        (1, 1.0),
        (1, True),
        (0, False),
        (0.0, -0.0),
        ("x", b"x"),
        (None, ""),
        ([], None),
        ([], {}),
        ([None], []),
        ("", b""),
    ],
)
def test_distinct_values_that_a_naive_encoding_confuses_hash_differently(left: Any, right: Any) -> None:
    assert hash_struct(left) != hash_struct(right)


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (("a", 1), ["a", 1]),
        ([("x", (1, 2))], [["x", [1, 2]]]),
        (float("nan"), -float("nan")),
        ({"b": 1, "a": 2}, {"a": 2, "b": 1}),
        ({"z", "y", "x"}, frozenset({"x", "y", "z"})),
    ],
)
def test_values_that_are_the_same_structure_hash_equal(left: Any, right: Any) -> None:
    assert hash_struct(left) == hash_struct(right)


def test_the_encoding_is_pinned_so_that_existing_cache_keys_stay_valid() -> None:
    """A change to the byte encoding would silently invalidate every stored cache key."""
    value = ["cairn.step/1", "a", 7, -1.5, None, True, b"\x00", {"k": [1], "j": ()}]
    assert encode(value) == (b"l8:s12:cairn.step/1s1:ai7;f-0x1.8000000000000p+0;NTb1:\x00d2:s1:jl0:s1:kl1:i1;")
    assert hash_struct(value) == digest_bytes(encode(value))
    assert hash_struct(value).startswith("b3:") and len(hash_struct(value)) == 3 + 64


@pytest.mark.parametrize("value", [object(), 1 + 2j, [1, object()], {"k": {1, 2}.__iter__()}])
def test_values_without_a_canonical_form_are_refused(value: Any) -> None:
    with pytest.raises(TypeError, match="cannot hash a value of type"):
        hash_struct(value)


class _Name(StrEnum):
    A = "a"


class _Count(IntEnum):
    ONE = 1


@pytest.mark.parametrize(
    ("value", "encoded", "digest"),
    [
        (
            ["cairn.step/1", "n1", "", 3, {"k": 5, "b": [1.5, None]}, (True, False), [("x", "", "b3:0")], {}],
            b"l8:s12:cairn.step/1s2:n1s0:i3;d2:s1:bl2:f0x1.8000000000000p+0;Ns1:ki5;l2:TFl1:l3:s1:xs0:s4:b3:0d0:",
            "b3:e198f9f7a9e26918b7fdd3b28a80cbf9cc11bb774493ae40474797ff8d98c989",
        ),
        (
            {_Name.A: _Count.ONE, "z": b"\x00", 2: frozenset({"p", 3})},
            b"d3:i2;e2:i3;s1:ps1:ai1;s1:zb1:\x00",
            "b3:741cb2f02fce17f00855b53e7c1b6e414e939208d1792d0ff9e8de6c0c287012",
        ),
        (
            [float("nan"), -0.0, "é", (_Name.A, [_Count.ONE, True])],
            b"l4:fnan;f-0x0.0p+0;s2:\xc3\xa9l2:s1:al2:i1;T",
            "b3:88307dd7c4e88d51a4719300167d650b98717c26c1975a43a918a18ba0a2c880",
        ),
    ],
)
def test_the_encoding_is_pinned_byte_for_byte_for_exact_types_and_subclasses(
    value: Any, encoded: bytes, digest: str
) -> None:
    """Stored cache keys stay valid: str/int subclasses (enums) and bools encode like their plain values."""
    assert encode(value) == encoded
    assert hash_struct(value) == digest


names = st.text(max_size=6) | st.sampled_from(list(_Name))
# Each list's items compare with each other (the key sorts them): exact triples of str, or other shapes.
input_lists = (
    st.lists(st.tuples(names, names, names), max_size=4)
    | st.lists(st.lists(names, min_size=3, max_size=3), max_size=3)
    | st.lists(st.tuples(names, st.integers()), max_size=3)
)


@given(
    asset=names,
    partition=names,
    code_version=names,
    params=st.dictionaries(keys, structures, max_size=4),
    seed=st.integers() | st.sampled_from(list(_Count)),
    inputs=input_lists,
    env=st.dictionaries(names, names, max_size=3),
)
@settings(max_examples=300, deadline=None)
def test_cache_keys_and_seeds_hash_exactly_their_structure(
    asset: str,
    partition: str,
    code_version: str,
    params: dict[Any, Any],
    seed: int,
    inputs: list[Any],
    env: dict[str, str],
) -> None:
    """`cache_key` and `derive_seed` encode their parts directly: the same bytes as the structure they name."""
    step = StepId(asset, partition)
    whole = [STEP_KEY_TAG, asset, partition, code_version, params, seed, sorted(inputs), env]
    assert cache_key(step, code_version, params, seed, inputs, env) == hash_struct(whole)
    expected = int(hash_struct([SEED_TAG, seed, asset, partition])[3:11], 16) & 0x7FFFFFFF
    assert derive_seed(seed, step) == expected
