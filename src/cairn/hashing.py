"""Canonical, tagged BLAKE3 hashing of structures and bytes; every hash is written as ``b3:<hex>``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from blake3 import blake3

PREFIX = "b3:"


def digest_bytes(data: bytes) -> str:
    """Hash raw bytes."""
    return PREFIX + blake3(data).hexdigest()


def new_hasher() -> Any:
    """An incremental hasher with ``update(bytes)``; finish it with `finish`."""
    return blake3()


def finish(hasher: Any) -> str:
    """The prefixed hex digest of an incremental hasher."""
    return PREFIX + str(hasher.hexdigest())


def encode(value: Any) -> bytes:
    """Encode a structure canonically: typed, length-prefixed, dict keys sorted by their encoding.

    Two different structures never share an encoding, so a change in one field cannot be
    compensated by another (``["ab", "c"]`` and ``["a", "bc"]`` differ).
    """
    out = bytearray()
    _encode_into(value, out)
    return bytes(out)


def hash_struct(value: Any) -> str:
    """The canonical hash of a structure of None, bool, int, float, str, bytes, lists, tuples and dicts."""
    return digest_bytes(encode(value))


def encoded_str(value: str) -> bytes:
    """`encode` of a str (a ready part for `hash_encoded`)."""
    if type(value) is not str:
        return encode(value)
    raw = value.encode("utf-8")
    return b"s%d:%b" % (len(raw), raw)


def hash_encoded(parts: list[bytes]) -> str:
    """`hash_struct` of a list whose items are given already encoded (the same bytes, the same hash).

    For hashes computed once per step: cache keys and seeds of 20,000 steps skip the generic encoder.
    """
    return PREFIX + blake3(b"l%d:%b" % (len(parts), b"".join(parts))).hexdigest()


def encoded_triples(items: Sequence[Sequence[Any]]) -> bytes:
    """`encode` of a list of 3-tuples, written directly when every item is a tuple (or a named tuple, which
    `encode` writes as the same list) of exactly three str."""
    out = [b"l%d:" % len(items)]
    for item in items:
        if isinstance(item, tuple) and len(item) == 3:
            a, b, c = item
            if type(a) is str and type(b) is str and type(c) is str:
                ra, rb, rc = a.encode("utf-8"), b.encode("utf-8"), c.encode("utf-8")
                out.append(b"l3:s%d:%bs%d:%bs%d:%b" % (len(ra), ra, len(rb), rb, len(rc), rc))
                continue
        return encode(items)
    return b"".join(out)


_PLAIN = (type(None), bool, int, float, str, bytes)


def check_hashable(value: Any) -> None:
    """Raise the `TypeError` that `hash_struct` would raise for `value`, without encoding it."""
    kind = type(value)
    if kind in _PLAIN:
        return
    if kind is dict:
        for k, v in value.items():  # plain keys and values checked here: the common params of an asset
            if type(k) not in _PLAIN:
                check_hashable(k)
            if type(v) not in _PLAIN:
                check_hashable(v)
    elif kind is list or kind is tuple:
        for item in value:
            if type(item) not in _PLAIN:
                check_hashable(item)
    else:
        encode(value)  # subclasses, sets and anything else: the encoder decides


def _encode_into(value: Any, out: bytearray) -> None:
    # Exact types first (the common case: cache keys are lists of strings, ints and small dicts; a step table
    # of 20,000 steps encodes one per step); subclasses, bool, floats and the rest go through `_encode_other`,
    # which writes the same bytes for them.
    kind = type(value)
    if kind is str:
        raw = value.encode("utf-8")
        out += b"s%d:" % len(raw)
        out += raw
    elif kind is list or kind is tuple:
        out += b"l%d:" % len(value)
        for item in value:
            inner = type(item)
            if inner is str:
                raw = item.encode("utf-8")
                out += b"s%d:" % len(raw)
                out += raw
            elif inner is int:
                out += b"i%d;" % item
            else:
                _encode_into(item, out)
    elif kind is dict:
        _encode_dict(value, out)
    elif kind is int:
        out += b"i%d;" % value
    else:
        _encode_other(value, out)


def _encode_dict(value: dict[Any, Any], out: bytearray) -> None:
    if len(value) < 2:
        out += b"d%d:" % len(value)
        for k, v in value.items():
            out += _encoded(k)
            out += _encoded(v)
        return
    pairs = sorted((_encoded(k), _encoded(v)) for k, v in value.items())
    out += b"d%d:" % len(pairs)
    for k, v in pairs:
        out += k
        out += v


def _encoded(value: Any) -> bytes:
    """`encode` with the common dict keys and values (str, int) written directly."""
    kind = type(value)
    if kind is str:
        raw = value.encode("utf-8")
        return b"s%d:%b" % (len(raw), raw)
    if kind is int:
        return b"i%d;" % value
    return encode(value)


def _encode_other(value: Any, out: bytearray) -> None:
    if value is None:
        out += b"N"
    elif value is True:
        out += b"T"
    elif value is False:
        out += b"F"
    elif isinstance(value, int):
        out += b"i%d;" % value
    elif isinstance(value, float):
        if math.isnan(value):
            out += b"fnan;"
        else:
            out += b"f" + value.hex().encode() + b";"
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        out += b"s%d:" % len(raw) + raw
    elif isinstance(value, bytes):
        out += b"b%d:" % len(value) + value
    elif isinstance(value, list | tuple):
        out += b"l%d:" % len(value)
        for item in value:
            _encode_into(item, out)
    elif isinstance(value, dict):
        _encode_dict(value, out)
    elif isinstance(value, set | frozenset):
        items = sorted(encode(v) for v in value)
        out += b"e%d:" % len(items)
        for item in items:
            out += item
    else:
        raise TypeError(f"cannot hash a value of type {type(value).__name__}: {value!r}")
