"""Code versions: normalized AST of the function plus the project code and constants it reaches."""

from __future__ import annotations

import ast
import sys
import textwrap
import types
from collections.abc import Iterator
from typing import Any

import pytest

from cairn.core.fingerprint import Fingerprinter, ast_part, code_version

_counter = iter(range(10**6))


class _Modules:
    """Builds throwaway project modules from source text, and finds their AST nodes without files."""

    def __init__(self) -> None:
        self.sources: dict[str, str] = {}
        self.names: list[str] = []

    def make(self, text: str, name: str | None = None) -> types.ModuleType:
        name = name or f"_fp_mod_{next(_counter)}"
        text = textwrap.dedent(text)
        module = types.ModuleType(name)
        module.__file__ = f"<{name}>"
        sys.modules[name] = module
        self.names.append(name)
        self.sources[name] = text
        exec(compile(text, module.__file__, "exec"), module.__dict__)
        return module

    def node_of(self, obj: Any) -> ast.AST | None:
        """The def of `obj` by its code's own place (a `functools.wraps` wrapper's names are copied)."""
        code = getattr(obj, "__code__", None)
        module = getattr(obj, "__globals__", {}).get("__name__") if code is not None else obj.__module__
        text = self.sources.get(module or "")
        if text is None:
            return None
        name = code.co_qualname.rsplit(".", 1)[-1] if code is not None else obj.__name__
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name == name:
                return node
        return None

    def part_of(self, obj: Any) -> tuple[str, list[str]] | None:
        node = self.node_of(obj)
        return ast_part(node) if node is not None else None

    def is_project(self, obj: Any) -> bool:
        name = obj.__name__ if isinstance(obj, types.ModuleType) else getattr(obj, "__module__", "")
        return name in self.sources

    def fingerprinter(self) -> Fingerprinter:
        return Fingerprinter(self.part_of, self.is_project)

    def version(self, text: str, fn: str = "f") -> tuple[str, dict[str, str]]:
        module = self.make(text, "_fp_pipeline")
        parts = self.fingerprinter().parts(getattr(module, fn))
        return code_version(parts), parts


@pytest.fixture
def mods() -> Iterator[_Modules]:
    m = _Modules()
    yield m
    for name in m.names:
        sys.modules.pop(name, None)


BASE = textwrap.dedent("""
    import math
    SCALE = 2

    def helper(x):
        return x * SCALE

    def f(x):
        return helper(x) + math.floor(1.5)
""")


def test_comments_docstrings_formatting_and_decorators_do_not_count(mods: _Modules) -> None:
    base, _ = mods.version(BASE)
    restyled = """
        import math
        SCALE = 2
        def helper(x):
            '''Doubles.'''
            # a comment
            return x*SCALE
        def deco(fn):
            return fn
        @deco
        def f(x):
            "The docstring changed."
            return (helper(x)
                    + math.floor(1.5))   # trailing comment
    """
    assert mods.version(restyled)[0] == base


def test_a_helper_body_changes_the_version_and_is_named(mods: _Modules) -> None:
    base, parts = mods.version(BASE)
    changed, new_parts = mods.version(BASE.replace("return x * SCALE", "return x * SCALE + 1"))
    assert changed != base
    old = {p.rsplit(".", 1)[-1]: h for p, h in parts.items()}
    new = {p.rsplit(".", 1)[-1]: h for p, h in new_parts.items()}
    assert {label for label in new if new[label] != old.get(label)} == {"helper"}


def test_a_constant_read_transitively_changes_the_version(mods: _Modules) -> None:
    base, _ = mods.version(BASE)
    assert mods.version(BASE.replace("SCALE = 2", "SCALE = 3"))[0] != base


def test_an_unused_constant_does_not(mods: _Modules) -> None:
    base, _ = mods.version(BASE)
    assert mods.version(BASE + "\nUNUSED = 5\n")[0] == base


def test_project_classes_are_followed(mods: _Modules) -> None:
    text = """
        class Scaler:
            def apply(self, x):
                return x * 2

        def f(x):
            return Scaler().apply(x)
    """
    base, parts = mods.version(text)
    assert any(p.endswith("Scaler") for p in parts)
    assert mods.version(text.replace("x * 2", "x * 4"))[0] != base


def test_helpers_reached_through_a_project_module_attribute(mods: _Modules) -> None:
    lib = mods.make("def clean(x):\n    return x.strip()\n")
    text = f"""
        import {lib.__name__} as lib

        def f(x):
            return lib.clean(x)
    """
    _, parts = mods.version(text)
    assert any(p.endswith(".clean") for p in parts)


def test_third_party_code_is_not_part_of_the_version(mods: _Modules) -> None:
    _, parts = mods.version(BASE)
    assert not any("math" in p for p in parts)


def test_recursion_and_mutual_references_terminate(mods: _Modules) -> None:
    text = """
        def g(n):
            return f(n - 1) if n else 0

        def f(n):
            return g(n)
    """
    _, parts = mods.version(text)
    assert {p.rsplit(".", 1)[-1] for p in parts} == {"f", "g"}


def test_version_without_source_falls_back_to_bytecode() -> None:
    namespace: dict[str, Any] = {}
    exec("def f(x):\n    return x + 1\n", namespace)
    fp = Fingerprinter(lambda obj: None, lambda obj: False)
    one = code_version(fp.parts(namespace["f"]))
    exec("def f(x):\n    return x + 2\n", namespace)
    two = code_version(Fingerprinter(lambda obj: None, lambda obj: False).parts(namespace["f"]))
    assert one != two


def test_parameters_and_locals_shadow_globals(mods: _Modules) -> None:
    text = """
        def numbers():
            return 1

        def f(numbers, x):
            total = 0
            for item in numbers:
                total += item
            return total + x
    """
    _, parts = mods.version(text)
    assert {p.rsplit(".", 1)[-1] for p in parts} == {"f"}


def test_small_collections_of_constants_count_and_big_ones_do_not(mods: _Modules) -> None:
    text = """
        PRICES = [1.0, 2.0]
        LIMITS = {"low": 1, "high": (2, 3)}
        BIG = list(range(20000))

        def f(x):
            return x * PRICES[0] + LIMITS["low"] + BIG[0]
    """
    base, _ = mods.version(text)
    assert mods.version(text.replace("[1.0, 2.0]", "[1.0, 2.5]"))[0] != base
    assert mods.version(text.replace('"low": 1', '"low": 2'))[0] != base
    assert mods.version(text.replace("range(20000)", "range(1, 20001)"))[0] == base


def _labels(parts: dict[str, str]) -> set[str]:
    return {p.rsplit(".", 1)[-1] for p in parts}


def _changed(old: dict[str, str], new: dict[str, str]) -> set[str]:
    return {p for p in set(old) | set(new) if old.get(p) != new.get(p)}


# ---- decorators: functools.wraps, closures -------------------------------------------------------

DECORATED = textwrap.dedent("""
    import functools
    import time

    def timed(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                time.perf_counter() - start
        return wrapper

    @timed
    def f():
        return 41
""")


def test_a_body_under_a_wraps_decorator_changes_the_version(mods: _Modules) -> None:
    base, parts = mods.version(DECORATED)
    changed, new_parts = mods.version(DECORATED.replace("return 41", "return 42"))
    assert changed != base
    assert _changed(parts, new_parts) == {"_fp_pipeline.f"}


def test_the_wrapped_body_is_the_first_part_and_the_wrapper_is_its_own_part(mods: _Modules) -> None:
    _, parts = mods.version(DECORATED)
    assert next(iter(parts)) == "_fp_pipeline.f"
    assert "_fp_pipeline.timed.<locals>.wrapper" in parts


def test_the_wrapper_code_counts_too(mods: _Modules) -> None:
    base, parts = mods.version(DECORATED)
    changed, new_parts = mods.version(DECORATED.replace("return fn(*args, **kwargs)", "return fn(*args) + 1"))
    assert changed != base
    assert _changed(parts, new_parts) == {"_fp_pipeline.timed.<locals>.wrapper"}


def test_comments_and_docstrings_under_a_decorator_do_not_count(mods: _Modules) -> None:
    base, _ = mods.version(DECORATED)
    restyled = DECORATED.replace("    return 41", '    """Forty-one."""\n    # the answer\n    return (41)')
    assert mods.version(restyled)[0] == base


def test_closure_cells_of_a_decorator_factory_are_followed(mods: _Modules) -> None:
    text = """
        import functools

        def helper(x):
            return x + 1

        def scaled(factor, post):
            def deco(fn):
                @functools.wraps(fn)
                def wrapper():
                    return post(fn()) * factor
                return wrapper
            return deco

        @scaled(3, helper)
        def f():
            return 41
    """
    base, parts = mods.version(text)
    assert {"f", "wrapper", "helper", "factor"} <= _labels(parts)
    assert mods.version(text.replace("scaled(3,", "scaled(4,"))[0] != base
    assert mods.version(text.replace("return x + 1", "return x + 2"))[0] != base


def test_a_wrapper_without_wraps_is_followed_through_its_closure(mods: _Modules) -> None:
    text = """
        def logged(fn):
            def inner(*args):
                return fn(*args)
            return inner

        def g():
            return 41

        f = logged(g)
    """
    base, _ = mods.version(text)
    assert mods.version(text.replace("return 41", "return 42"))[0] != base


def test_a_wrapper_without_source_is_followed_through_its_closure_cells() -> None:
    namespace: dict[str, Any] = {}
    exec("def deco(fn):\n    def w():\n        return fn()\n    return w\n", namespace)
    versions = []
    for body in ("41", "42"):
        exec(f"def g():\n    return {body}\n", namespace)
        fp = Fingerprinter(lambda obj: None, lambda obj: True)
        versions.append(code_version(fp.parts(namespace["deco"](namespace["g"]))))
    assert versions[0] != versions[1]


# ---- helpers reached indirectly ------------------------------------------------------------------


def test_a_method_of_a_module_level_instance_is_followed(mods: _Modules) -> None:
    text = """
        class Scaler:
            def __init__(self, factor=2):
                self.factor = factor

            def apply(self, x):
                return x * self.factor

        SCALER = Scaler()

        def f():
            return SCALER.apply(1)
    """
    fp = mods.fingerprinter()
    base, parts = mods.version(text)
    assert "_fp_pipeline.Scaler" in parts
    assert mods.version(text.replace("x * self.factor", "x * self.factor + 1"))[0] != base
    assert mods.version(text.replace("SCALER = Scaler()", "SCALER = Scaler(3)"))[0] != base
    module = mods.make(text)
    assert fp.unresolved(module.f) == []


@pytest.mark.parametrize(
    "registry",
    ['{"fn": double}', "[double]", "(double,)", '{"all": [double, 2]}'],
)
def test_functions_stored_in_module_level_collections_are_followed(mods: _Modules, registry: str) -> None:
    text = f"""
        def double(x):
            return x * 2

        REGISTRY = {registry}

        def f():
            return REGISTRY
    """
    base, parts = mods.version(text)
    assert "_fp_pipeline.double" in parts
    assert mods.version(text.replace("x * 2", "x * 3"))[0] != base


def test_swapping_the_function_in_a_registry_changes_the_version(mods: _Modules) -> None:
    text = """
        def double(x):
            return x * 2

        def triple(x):
            return x * 3

        REGISTRY = {"fn": double}

        def f():
            return REGISTRY["fn"](1)
    """
    base, _ = mods.version(text)
    assert mods.version(text.replace('{"fn": double}', '{"fn": triple}'))[0] != base


@pytest.mark.parametrize("decorator", ["functools.lru_cache", "functools.lru_cache(maxsize=8)", "functools.cache"])
def test_a_cached_helper_is_followed_through_wrapped(mods: _Modules, decorator: str) -> None:
    text = f"""
        import functools

        @{decorator}
        def helper(x):
            return x + 1

        def f():
            return helper(1)
    """
    base, parts = mods.version(text)
    assert "_fp_pipeline.helper" in parts
    assert mods.version(text.replace("x + 1", "x + 2"))[0] != base


def test_a_partial_over_a_project_function_is_followed(mods: _Modules) -> None:
    text = """
        import functools

        def scale(x, factor):
            return x * factor

        TRIPLE = functools.partial(scale, factor=3)

        def f():
            return TRIPLE(1)
    """
    base, parts = mods.version(text)
    assert {"scale", "TRIPLE"} <= _labels(parts)
    assert mods.version(text.replace("x * factor", "x * factor + 1"))[0] != base
    assert mods.version(text.replace("factor=3", "factor=4"))[0] != base


def test_a_helper_reached_through_a_project_module_attribute_counts_by_its_binding(mods: _Modules) -> None:
    lib = mods.make("LIMIT = 3\n")
    text = f"""
        import {lib.__name__} as lib

        def f(x):
            return min(x, lib.LIMIT)
    """
    _, parts = mods.version(text)
    assert f"{lib.__name__}.LIMIT" in parts


# ---- constants are parts of their own ------------------------------------------------------------


def test_a_changed_constant_is_a_part_named_by_its_binding(mods: _Modules) -> None:
    text = """
        THRESHOLD = 0.5

        def f(x):
            return x > THRESHOLD
    """
    _, parts = mods.version(text)
    _, new_parts = mods.version(text.replace("0.5", "0.7"))
    assert _changed(parts, new_parts) == {"_fp_pipeline.THRESHOLD"}


def test_a_constant_read_by_a_helper_is_its_own_part(mods: _Modules) -> None:
    _, parts = mods.version(BASE)
    _, new_parts = mods.version(BASE.replace("SCALE = 2", "SCALE = 3"))
    assert _changed(parts, new_parts) == {"_fp_pipeline.SCALE"}


# ---- what cannot be seen is reported -------------------------------------------------------------

OPAQUE = textwrap.dedent("""
    import socket

    class Client:
        def __init__(self):
            self.sock = socket.socket()

        def get(self):
            return 1

    CLIENT = Client()

    def f():
        return CLIENT.get()
""")


def test_an_instance_whose_state_cannot_be_described_is_reported(mods: _Modules) -> None:
    module = mods.make(OPAQUE)
    try:
        found = mods.fingerprinter().unresolved(module.f)
        assert [u.name for u in found] == [f"{module.__name__}.CLIENT"]
        assert found[0].what == f"an instance of {module.__name__}.Client holding a socket.socket"
        assert "_fp_" in str(found[0]) and "CLIENT" in str(found[0])
    finally:
        module.CLIENT.sock.close()


def test_an_opaque_third_party_object_is_reported(mods: _Modules) -> None:
    text = """
        import io

        BUFFER = io.StringIO()

        def f():
            return BUFFER.getvalue()
    """
    module = mods.make(text)
    assert [str(u) for u in mods.fingerprinter().unresolved(module.f)] == [
        f"{module.__name__}.BUFFER (an instance of _io.StringIO)"
    ]


def test_ordinary_references_are_not_reported(mods: _Modules) -> None:
    lib = mods.make("def clean(x):\n    return x\n")
    text = f"""
        import functools
        import json
        import logging
        import math
        import re
        import threading
        import typing
        from collections import OrderedDict
        from datetime import date
        from pathlib import Path
        from typing import Any, Optional, TypeVar

        import {lib.__name__} as lib
        from {lib.__name__} import clean

        T = TypeVar("T")
        Number = typing.Union[int, float]
        LOG = logging.getLogger(__name__)
        LOCK = threading.Lock()
        PATTERN = re.compile(r"[0-9]+")
        START = date(2026, 1, 1)
        ROOT = Path("data")
        BIG = list(range(20000))
        NAMES = ("a", "b")
        loads = json.loads

        def helper(x: Optional[Number]) -> Any:
            return x

        def f(x: T) -> T:
            with LOCK:
                LOG.info("x")
                return (helper(x), clean(x), lib.clean(x), math.floor(1.5), OrderedDict(), len(BIG),
                        PATTERN.match("1"), START, ROOT, NAMES, loads("1"), functools.reduce)
    """
    module = mods.make(text)
    assert mods.fingerprinter().unresolved(module.f) == []


def test_a_regex_pattern_and_a_date_constant_count_by_value(mods: _Modules) -> None:
    text = """
        import re
        from datetime import date

        PATTERN = re.compile(r"[0-9]+")
        START = date(2026, 1, 1)

        def f(x):
            return PATTERN.match(x), START
    """
    base, _ = mods.version(text)
    assert mods.version(text.replace("[0-9]+", "[0-9]*"))[0] != base
    assert mods.version(text.replace("2026, 1, 1", "2026, 1, 2"))[0] != base


def test_versions_are_stable_across_fingerprinters(mods: _Modules) -> None:
    text = """
        import functools

        def double(x):
            return x * 2

        REGISTRY = {"b": double, "a": {1, 2, 3}, "c": frozenset({"x", "y"})}
        P = functools.partial(double, 2)

        def f():
            return REGISTRY, P
    """
    assert mods.version(text) == mods.version(text)
