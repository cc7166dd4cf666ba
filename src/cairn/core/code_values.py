"""What a value that code reads contributes to its code version: a canonical structure and the code it holds.

A module-level value is configuration (a number, a dict of thresholds, a registry of functions, an instance of
a project class, a `functools.partial`) or it is data or third-party machinery. Configuration is described
structurally, the project functions and classes inside it are handed back to be fingerprinted in turn, and
whatever can be described by neither (a client object, a loaded model) is reported as opaque.
"""

from __future__ import annotations

import datetime
import enum
import functools
import pathlib
import re
import types
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cairn.hashing import encode

MAX_ITEMS = 10_000  # bigger module-level collections are data, not configuration

_SIMPLE = (int, float, str, bytes, bool, type(None))
_CONTAINERS = (tuple, list, set, frozenset, dict)
_CODE = (types.FunctionType, type)
_BUILTIN_CODE = (
    types.BuiltinFunctionType,
    types.MethodDescriptorType,
    types.WrapperDescriptorType,
    types.MethodWrapperType,
    types.ClassMethodDescriptorType,
)


@functools.cache
def _by_repr() -> tuple[type, ...]:
    """Types of values with a deterministic repr that says everything about them (imported when a value is
    first described)."""
    import decimal
    import fractions

    return (
        complex,
        range,
        datetime.date,
        datetime.time,
        datetime.timedelta,
        datetime.timezone,
        decimal.Decimal,
        fractions.Fraction,
        uuid.UUID,
        pathlib.PurePath,
    )


# Third-party values that are data, not behaviour (like a big list): never reported.
_DATA_LIBRARIES = frozenset({"numpy", "pandas", "polars", "pyarrow", "scipy"})
# Types whose instances do not influence what a function computes.
_HARMLESS = frozenset(
    {
        "logging.Logger",
        "logging.RootLogger",
        "logging.LoggerAdapter",
        "_thread.lock",
        "_thread.RLock",
        "threading.Event",
        "threading.Condition",
        "threading.Semaphore",
        "threading.BoundedSemaphore",
    }
)
_TYPING_MODULES = frozenset({"typing", "typing_extensions", "types", "abc", "collections.abc"})

IsProject = Callable[[Any], bool]
NameOf = Callable[[Any], str]


@dataclass(frozen=True, slots=True)
class Described:
    """A value's structure, the project functions and classes it holds, and the opaque types inside it."""

    struct: Any
    refs: tuple[Any, ...] = ()
    opaque: tuple[str, ...] = ()
    code_only: bool = False  # nothing but references to code: the code's own parts cover it


_NOT_COUNTED = frozenset({"module", "external", "typing", "harmless", "cairn", "data"})


def describe(value: Any, is_project: IsProject, name_of: NameOf) -> Described | None:
    """How a value read by project code counts, or None when it does not count at all.

    Modules, third-party functions and classes (covered by ``env=``), typing constructs, loggers, cairn's own
    objects and data (collections over `MAX_ITEMS` items, arrays and frames) do not count.
    """
    walk = _Walk(is_project, name_of)
    struct = walk.value(value)
    if isinstance(struct, list) and struct[0] in _NOT_COUNTED:
        return None
    code_only = bool(walk.refs) and _only_code(struct)
    return Described(struct, tuple(walk.refs), tuple(walk.opaque), code_only)


def type_name(value: Any) -> str:
    kind = type(value)
    return f"{kind.__module__}.{kind.__qualname__}"


def wrapped_of(value: Any) -> Any:
    """The function a decorator wrapped (``functools.wraps``, ``lru_cache``), or None."""
    if isinstance(value, type):
        return None
    # Only an attribute set on the object itself (as `functools.update_wrapper` does) counts: a proxy
    # that answers every attribute must not lead the walk astray.
    own = getattr(value, "__dict__", None)
    inner = own.get("__wrapped__") if isinstance(own, dict) else None
    return inner if callable(inner) else None


def _quiet_kind(value: Any) -> str | None:
    """Why a value is neither configuration nor opaque (typing, logging, cairn objects, data), if it is."""
    module = type(value).__module__ or ""
    if module in _TYPING_MODULES and not isinstance(value, types.SimpleNamespace):
        return "typing"
    if type_name(value) in _HARMLESS:
        return "harmless"
    if module == "cairn" or module.startswith("cairn."):
        return "cairn"
    if module.split(".")[0] in _DATA_LIBRARIES:
        return "data"
    return None


def _bound_to_value(value: Any) -> bool:
    owner = getattr(value, "__self__", None)
    return owner is not None and not isinstance(owner, types.ModuleType | type)


def _only_code(struct: Any) -> bool:
    return (
        isinstance(struct, list)
        and bool(struct)
        and (struct[0] == "code" or (struct[0] == "wrapped" and _only_code(struct[2])))
    )


@dataclass
class _Walk:
    is_project: IsProject
    name_of: NameOf
    refs: list[Any] = field(default_factory=list)
    opaque: list[str] = field(default_factory=list)
    budget: int = MAX_ITEMS
    path: set[int] = field(default_factory=set)

    def value(self, value: Any) -> Any:
        if isinstance(value, _SIMPLE):
            return value
        if isinstance(value, types.ModuleType):
            return ["module", value.__name__]
        if id(value) in self.path:
            return ["cycle"]
        self.path.add(id(value))
        try:
            return self._compound(value)
        finally:
            self.path.discard(id(value))

    def code(self, value: Any) -> Any:
        if self.is_project(value):
            self.refs.append(value)
            return ["code", self.name_of(value)]
        return ["external", getattr(value, "__module__", None) or "", getattr(value, "__qualname__", "?")]

    def _compound(self, value: Any) -> Any:
        asset_fn = getattr(value, "fn", None) if not isinstance(value, type) else None
        if callable(asset_fn) and hasattr(value, "inputs"):
            return self.value(asset_fn)  # another asset's function, called as a helper
        if isinstance(value, _CODE) and self.is_project(value):
            return self.code(value)  # a project wrapper is code of its own, which follows `__wrapped__`
        inner = wrapped_of(value)
        if inner is not None:
            return ["wrapped", type_name(value), self.value(inner)]
        if isinstance(value, _CODE):
            return self.code(value)
        if isinstance(value, functools.partial):
            return ["partial", self.value(value.func), self.value(list(value.args)), self.value(value.keywords)]
        if isinstance(value, types.MethodType):
            return ["method", self.value(value.__func__), self.value(value.__self__)]
        if isinstance(value, _BUILTIN_CODE):
            if _bound_to_value(value):
                return ["method", getattr(value, "__qualname__", "?"), self.value(getattr(value, "__self__", None))]
            return self.code(value)
        if isinstance(value, _CONTAINERS):
            return self._container(value)
        if isinstance(value, enum.Enum):
            return ["enum", self.code(type(value)), value.name]
        if isinstance(value, re.Pattern):
            return ["re", value.pattern, value.flags]
        if isinstance(value, _by_repr()):
            return [type_name(value), repr(value)]
        quiet = _quiet_kind(value)
        if quiet is not None:
            return [quiet, type_name(value)]
        if self.is_project(type(value)):
            return ["instance", self.code(type(value)), self.value(_state(value))]
        if isinstance(value, types.SimpleNamespace):
            return ["namespace", self.value(vars(value))]
        self.opaque.append(type_name(value))
        return ["opaque", type_name(value)]

    def _container(self, value: Any) -> Any:
        kind = type(value).__name__
        if len(value) > self.budget:
            return ["data", kind]
        self.budget -= len(value)
        if isinstance(value, dict):
            pairs = [[self.value(k), self.value(v)] for k, v in value.items()]
            return ["dict", kind, sorted(pairs, key=lambda pair: encode(pair[0]))]
        items = [self.value(v) for v in value]
        if isinstance(value, set | frozenset):
            items.sort(key=encode)
        return [kind, items]


def _state(value: Any) -> dict[str, Any]:
    """An instance's attributes: its ``__dict__`` and its slots."""
    state: dict[str, Any] = dict(getattr(value, "__dict__", {}))
    for kind in type(value).__mro__:
        slots = vars(kind).get("__slots__", ())
        for slot in (slots,) if isinstance(slots, str) else slots:
            if slot not in ("__dict__", "__weakref__") and hasattr(value, slot):
                state[slot] = getattr(value, slot)
    return state
