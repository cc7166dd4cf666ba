"""Canonical, tagged BLAKE3 hashing of structures and bytes; every hash is written as ``b3:<hex>``."""

from __future__ import annotations

import math
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


def _encode_into(value: Any, out: bytearray) -> None:
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
        pairs = sorted((encode(k), encode(v)) for k, v in value.items())
        out += b"d%d:" % len(pairs)
        for k, v in pairs:
            out += k + v
    elif isinstance(value, set | frozenset):
        items = sorted(encode(v) for v in value)
        out += b"e%d:" % len(items)
        for item in items:
            out += item
    else:
        raise TypeError(f"cannot hash a value of type {type(value).__name__}: {value!r}")
