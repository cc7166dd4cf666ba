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
        text = self.sources.get(getattr(obj, "__module__", ""))
        if text is None:
            return None
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name == obj.__name__:
                return node
        return None

    def part_of(self, obj: Any) -> tuple[str, list[str]] | None:
        node = self.node_of(obj)
        return ast_part(node) if node is not None else None

    def is_project(self, obj: Any) -> bool:
        name = obj.__name__ if isinstance(obj, types.ModuleType) else getattr(obj, "__module__", "")
        return name in self.sources

    def version(self, text: str, fn: str = "f") -> tuple[str, dict[str, str]]:
        module = self.make(text, "_fp_pipeline")
        parts = Fingerprinter(self.part_of, self.is_project).parts(getattr(module, fn))
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
