"""Code versions: the hash of a function's normalized AST plus, transitively, the project code it uses.

Comments, docstrings, formatting and decorators do not count; the body of a project helper, a project
class, or a simple module-level constant that the function reads does. Third-party code is covered by
``env=`` instead. Reading source files is left to the caller (`SourcePart`), so this module does no I/O.
"""

from __future__ import annotations

import ast
import copy
import sys
import types
from collections.abc import Callable, Mapping
from typing import Any

from cairn.core.keys import CODE_TAG
from cairn.hashing import hash_struct

# The part of a function or class found in its source: (digest of the normalized AST, global names it reads),
# or None when there is no source (the bytecode is used instead).
SourcePart = Callable[[Any], tuple[str, list[str]] | None]
IsProject = Callable[[Any], bool]

# Bump when the normalization changes (what `_strip` removes, how the AST is dumped): stored parts computed
# under another format are not reused.
AST_FORMAT = 1

_SIMPLE = (int, float, str, bytes, bool, type(None))


def code_version(parts: Mapping[str, str]) -> str:
    """Combine the parts of a function's code into one version."""
    return hash_struct([CODE_TAG, dict(parts)])


def part_label(part: str) -> str:
    """A short name for a part, as shown in reasons: ``pipeline._parse_ts`` → ``_parse_ts``."""
    return part.rsplit(".", 1)[-1]


class Fingerprinter:
    """Computes and memoizes code parts of functions within one process."""

    def __init__(self, source_part: SourcePart, is_project: IsProject) -> None:
        self._source_part = source_part
        self._is_project = is_project
        self._own: dict[int, tuple[str, str, list[Any]]] = {}

    def parts(self, fn: Callable[..., Any]) -> dict[str, str]:
        """Every part of `fn`'s code: itself and the project code and constants it reaches."""
        parts: dict[str, str] = {}
        stack: list[Any] = [fn]
        seen: set[int] = set()
        while stack:
            obj = stack.pop()
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            name, digest, refs = self._own_part(obj)
            parts[name] = digest
            stack.extend(refs)
        return parts

    def _own_part(self, obj: Any) -> tuple[str, str, list[Any]]:
        """The part of one function or class alone, and the objects it refers to."""
        cached = self._own.get(id(obj))
        if cached is not None:
            return cached
        name = f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', '?')}"
        found = self._source_part(obj)
        if found is not None:
            digest, names = found
        else:
            code = getattr(obj, "__code__", None)
            digest = hash_struct(["bytecode", _code_struct(code)]) if code else hash_struct(["opaque", name])
            names = list(code.co_names) if code else []
        refs, constants = self._resolve(obj, names)
        for const_name, value in constants.items():
            digest = hash_struct([digest, const_name, value])
        result = (name, digest, refs)
        self._own[id(obj)] = result
        return result

    def _resolve(self, obj: Any, names: list[str]) -> tuple[list[Any], dict[str, Any]]:
        namespace = _namespace_of(obj)
        refs: list[Any] = []
        constants: dict[str, Any] = {}
        for dotted in names:
            head, *rest = dotted.split(".")
            if head not in namespace:
                continue
            value = namespace[head]
            for attr in rest:
                if not isinstance(value, types.ModuleType) or not self._is_project(value):
                    break
                value = getattr(value, attr, None)
            fn = getattr(value, "fn", None)
            if callable(fn) and hasattr(value, "inputs"):
                value = fn  # another asset's function, called as a helper
            if isinstance(value, types.FunctionType | type) and self._is_project(value):
                refs.append(value)
            elif _is_simple_constant(value):
                constants[dotted] = _constant_struct(value)
        return refs, constants


def ast_part(node: ast.AST) -> tuple[str, list[str]]:
    """The digest of a def's or class's normalized AST and the global names it reads."""
    stripped = _strip(node)
    digest = hash_struct(["ast", ast.dump(stripped, annotate_fields=False, include_attributes=False)])
    return digest, _referenced_names(stripped)


def _namespace_of(obj: Any) -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    module = sys.modules.get(getattr(obj, "__module__", "") or "")
    if module is not None:
        namespace.update(vars(module))
    namespace.update(getattr(obj, "__globals__", {}))
    code = getattr(obj, "__code__", None)
    closure = getattr(obj, "__closure__", None)
    if code is not None and closure:
        for var, cell in zip(code.co_freevars, closure, strict=False):
            try:
                namespace[var] = cell.cell_contents
            except ValueError:
                continue
    return namespace


def _strip(node: ast.AST) -> ast.AST:
    """A copy of a def or class without its decorators and docstrings (positions and comments never count)."""
    clone = copy.deepcopy(node)
    for sub in ast.walk(clone):
        if isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            body = sub.body
            first = body[0] if body else None
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                sub.body = body[1:] or [ast.Pass()]
    if isinstance(clone, ast.FunctionDef | ast.AsyncFunctionDef):
        clone.decorator_list = []
    return clone


def _referenced_names(node: ast.AST) -> list[str]:
    """Global names (and dotted attribute chains on them) that the code reads, in first-seen order.

    Names bound inside the code (parameters, assignments, loop variables, imports, nested defs) are
    local and never resolve to module globals, even when a global of the same name exists.
    """
    local = _bound_names(node)
    found: dict[str, None] = {}
    for sub in ast.walk(node):
        if isinstance(sub, ast.Attribute):
            chain = _dotted(sub)
            if chain and chain.split(".")[0] not in local:
                found[chain] = None
        elif isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load) and sub.id not in local:
            found[sub.id] = None
    return list(found)


def _bound_names(node: ast.AST) -> set[str]:
    bound: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.arg):
            bound.add(sub.arg)
        elif isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store | ast.Del):
            bound.add(sub.id)
        elif isinstance(sub, ast.Import | ast.ImportFrom):
            bound.update((alias.asname or alias.name).split(".")[0] for alias in sub.names)
        elif sub is not node and isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(sub.name)
    globals_declared = {n for sub in ast.walk(node) if isinstance(sub, ast.Global) for n in sub.names}
    return bound - globals_declared


def _dotted(node: ast.Attribute) -> str | None:
    parts = [node.attr]
    value: ast.expr = node.value
    while isinstance(value, ast.Attribute):
        parts.append(value.attr)
        value = value.value
    if isinstance(value, ast.Name):
        parts.append(value.id)
        return ".".join(reversed(parts))
    return None


_MAX_CONSTANT_ITEMS = 10_000  # bigger module-level collections are data, not configuration


def _is_simple_constant(value: Any, budget: list[int] | None = None) -> bool:
    """Numbers, strings, bytes, booleans, None, and small tuples, lists, sets and dicts of them."""
    budget = budget if budget is not None else [_MAX_CONSTANT_ITEMS]
    if isinstance(value, _SIMPLE):
        return True
    if isinstance(value, tuple | list | frozenset | set | dict):
        budget[0] -= len(value)
        if budget[0] < 0:
            return False
        items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
        return all(_is_simple_constant(v, budget) for v in items)
    return False


def _constant_struct(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [type(value).__name__, [_constant_struct(v) for v in value]]
    if isinstance(value, frozenset | set):
        return [type(value).__name__, sorted(repr(v) for v in value)]
    if isinstance(value, dict):
        return ["dict", sorted((repr(k), _constant_struct(v)) for k, v in value.items())]
    return value


def _code_struct(code: types.CodeType) -> list[Any]:
    """A position-independent description of a code object (used when no source is available)."""
    consts = [_code_struct(c) if isinstance(c, types.CodeType) else repr(c) for c in code.co_consts]
    return [code.co_code, list(code.co_names), consts, code.co_argcount]
