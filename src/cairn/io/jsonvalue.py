"""Canonical JSON for JSON-able values: sorted keys, compact separators, UTF-8, no NaN or infinity."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from cairn.errors import SerializationError

_SCALARS = (str, int, bool, type(None))


@dataclass(frozen=True, slots=True)
class JsonProblem:
    """Why a value is not JSON-able: ``kind`` is "type" (no JSON form) or "number" (NaN or infinity)."""

    kind: str
    path: str
    found: object

    def error(self) -> SerializationError:
        """The error to raise when the value was meant to be stored as JSON."""
        if self.kind == "number":
            return SerializationError(
                f"cannot store {self.path} = {self.found!r} as JSON: JSON has no NaN or infinity. Replace "
                "it with None or a finite number, or return the data as a DataFrame or numpy array, which "
                "keep NaN."
            )
        return SerializationError(
            f"cannot store {self.path} as JSON: it is a {type_name(self.found)}. JSON-able values are dicts "
            "with str keys, lists, tuples, str, int, float, bool and None; convert it to one of these, or "
            'store the value with io="pickle" (or io="joblib", io="skops").'
        )


def type_name(value: object) -> str:
    """The qualified name of a value's type (``int``, ``sklearn.linear_model._base.LinearRegression``)."""
    kind = type(value)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def json_problem(value: object, path: str = "value") -> JsonProblem | None:
    """The first part of ``value`` that canonical JSON cannot store faithfully, or None.

    Types are matched exactly: a subclass (an ``IntEnum``, a numpy float) would come back as its base type.
    """
    if type(value) is float:
        return None if math.isfinite(value) else JsonProblem("number", path, value)
    if type(value) in _SCALARS:
        return None
    if type(value) is dict:
        for key, item in value.items():
            if type(key) is not str:
                return JsonProblem("type", f"the key {key!r} of {path}", key)
            problem = json_problem(item, f"{path}[{key!r}]")
            if problem is not None:
                return problem
        return None
    if type(value) is list or type(value) is tuple:
        for index, item in enumerate(value):
            problem = json_problem(item, f"{path}[{index}]")
            if problem is not None:
                return problem
        return None
    return JsonProblem("type", path, value)


def encode_json(value: object) -> bytes:
    """The canonical JSON bytes of a JSON-able value; equal values give equal bytes.

    Raises:
        SerializationError: the value (or a part of it) has no faithful JSON form; the message says where.
    """
    try:
        problem = json_problem(value)
    except RecursionError:
        raise SerializationError(
            "cannot store the value as JSON: it is nested too deeply or contains itself; "
            'flatten it or pass io="pickle".'
        ) from None
    if problem is not None:
        raise problem.error()
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8")


def decode_json(data: bytes) -> object:
    """The value of canonical JSON bytes (tuples come back as lists)."""
    return json.loads(data.decode("utf-8"))
