"""Explicit opt-in serializers for arbitrary objects: pickle, joblib and skops (``io="pickle"`` ...)."""

from __future__ import annotations

import functools
import importlib
import io
import pickle
from collections.abc import Callable
from types import ModuleType
from typing import Any, Final

from cairn.core.records import StoredValue
from cairn.errors import SerializationError
from cairn.io.jsonvalue import type_name
from cairn.io.ports import Sink, Store, write_object

FORMATS: Final = ("pickle", "joblib", "skops")
# Fixed, so the same object gives the same bytes whichever Python default is in force.
PICKLE_PROTOCOL: Final = 5

_PACKAGES: Final = {"joblib": ("joblib", "joblib"), "skops": ("skops.io", "skops")}


def dump_pickled(value: object, store: Store, fmt: str) -> StoredValue:
    """Write ``value`` with the opt-in serializer ``fmt`` (one of `FORMATS`).

    Raises:
        SerializationError: the serializer is not installed or cannot serialize the value.
    """
    write: Callable[[Sink], object]
    if fmt == "pickle":
        write = functools.partial(pickle.dump, value, protocol=PICKLE_PROTOCOL)
    elif fmt == "joblib":
        write = functools.partial(_require(fmt).dump, value, protocol=PICKLE_PROTOCOL)
    else:
        write = functools.partial(_write_skops, _require(fmt), value)
    try:
        digest, size = write_object(store, write)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        raise SerializationError(
            f"cannot store a {type_name(value)} with io={fmt!r}: {exc}. Make the object picklable (no "
            "lambdas, open files, locks or local classes), or return a table, array or JSON-able value."
        ) from exc
    return StoredValue(digest, size, fmt, type_name(value))


def load_pickled(data: bytes, fmt: str) -> Any:
    """Unpickle bytes that the store has already verified against their recorded checksum."""
    if fmt == "pickle":
        return pickle.loads(data)
    if fmt == "joblib":
        return _require(fmt).load(io.BytesIO(data))
    try:
        return _require(fmt).loads(data)
    except SerializationError:
        raise
    except Exception as exc:
        raise SerializationError(
            f"skops refused to load the object: {exc}. skops loads only types it trusts; load it with "
            'skops.io.loads(data, trusted=[...]) after reviewing them, or store the model with io="joblib".'
        ) from exc


def _write_skops(skops_io: ModuleType, value: object, sink: Sink) -> None:
    sink.write(skops_io.dumps(value))


def _require(fmt: str) -> ModuleType:
    module_name, package = _PACKAGES[fmt]
    try:
        return importlib.import_module(module_name)
    except ImportError:
        raise SerializationError(
            f"io={fmt!r} needs the {package} package, which is not installed. Install it with "
            f'`pip install {package}`, or use io="pickle".'
        ) from None
