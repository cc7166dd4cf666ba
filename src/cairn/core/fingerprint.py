"""Code versions: the hash of a function's normalized AST plus, transitively, the project code it uses.

Comments, docstrings, formatting and decorators do not count; the body of a project helper, a project
class, or a simple module-level constant that the function reads does. The walk goes through what
decorators leave behind (``__wrapped__`` and closure cells, so a ``functools.wraps`` wrapper counts with the
function it wraps), ``lru_cache`` and ``partial`` objects, instances of project classes, and collections of
functions; each module-level value read is a part of its own (``pipeline.THRESHOLD``), so a reason can name
it. A value whose changes cannot be seen (a client object) is reported by `Fingerprinter.unresolved`.
Third-party code is covered by ``env=`` instead. Reading source files is left to the caller
(`SourcePart`), so this module does no I/O.
"""

from __future__ import annotations

import ast
import copy
import importlib.util
import sys
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cairn.core.code_values import describe, type_name, wrapped_of
from cairn.core.keys import CODE_TAG
from cairn.hashing import hash_struct

# The part of a function or class found in its source: (digest of the normalized AST, global names it reads),
# or None when there is no source (the bytecode is used instead).
SourcePart = Callable[[Any], tuple[str, list[str]] | None]
IsProject = Callable[[Any], bool]

# Bump when the normalization changes (what `_strip` removes, how the AST is dumped, how a function is found
# in its file): stored parts computed under another format are not reused.
AST_FORMAT = 3  # 3: names imported inside a function are followed (`IMPORTED`)
# A name that code binds by an import of its own (``from helpers import late`` inside a function) is read as
# ``<import>helpers:late``: resolved through the loaded module, not the function's globals.
IMPORTED = "<import>"


def code_version(parts: Mapping[str, str]) -> str:
    """Combine the parts of a function's code into one version."""
    return hash_struct([CODE_TAG, dict(parts)])


def part_label(part: str) -> str:
    """A short name for a part, as shown in reasons: ``pipeline._parse_ts`` → ``_parse_ts``."""
    return part.rsplit(".", 1)[-1]


def qualified_name(obj: Any) -> str:
    """Where a function or class is defined: ``module.qualname`` of its code, not what a decorator copied.

    ``functools.wraps`` copies ``__module__`` and ``__qualname__`` of the wrapped function onto the wrapper;
    the wrapper's code object still knows its own place (``deco.<locals>.wrapper``).
    """
    code = getattr(obj, "__code__", None)
    namespace = getattr(obj, "__globals__", None)
    module = namespace.get("__name__") if isinstance(namespace, dict) else None
    module = module or getattr(obj, "__module__", None) or "?"
    qualname = code.co_qualname if isinstance(code, types.CodeType) else None
    return f"{module}.{qualname or getattr(obj, '__qualname__', '?')}"


@dataclass(frozen=True, slots=True)
class Unresolved:
    """A value that an asset's code reads but whose changes its code version cannot see."""

    name: str  # where it is bound, e.g. ``pipeline.CLIENT``
    what: str  # e.g. ``an instance of httpx.Client``

    def __str__(self) -> str:
        return f"{self.name} ({self.what})"


@dataclass(frozen=True, slots=True)
class _Own:
    """One function or class alone: its part, the code it refers to, the values it reads."""

    obj: Any  # kept so that the memo's id() stays this object's
    name: str
    digest: str
    refs: tuple[Any, ...]
    values: tuple[tuple[str, str], ...]
    unresolved: tuple[Unresolved, ...]


@dataclass(frozen=True, slots=True)
class _Trace:
    parts: dict[str, str]
    unresolved: tuple[Unresolved, ...]


class Fingerprinter:
    """Computes and memoizes code parts of functions within one process."""

    def __init__(self, source_part: SourcePart, is_project: IsProject) -> None:
        self._source_part = source_part
        self._is_project = is_project
        self._own: dict[int, _Own] = {}

    def parts(self, fn: Callable[..., Any]) -> dict[str, str]:
        """Every part of `fn`'s code: itself and the project code and constants it reaches.

        The first part is the innermost function that decorators wrapped: the asset's own body.
        """
        return self._trace(fn).parts

    def unresolved(self, fn: Callable[..., Any]) -> list[Unresolved]:
        """The values `fn`'s code reaches whose changes its code version cannot see."""
        return list(self._trace(fn).unresolved)

    def _trace(self, fn: Callable[..., Any]) -> _Trace:
        chain: list[Any] = [fn]
        while (inner := wrapped_of(chain[-1])) is not None and all(inner is not c for c in chain):
            chain.append(inner)
        found: dict[str, set[str]] = {}
        unresolved: dict[str, Unresolved] = {}
        # Innermost first: the asset's own body is the first part, its decorators' wrappers come after.
        stack: list[Any] = [c for c in chain if self._is_code(c)] or [chain[-1]]
        seen: set[int] = set()
        while stack:
            obj = stack.pop()
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            own = self._own_part(obj)
            found.setdefault(own.name, set()).add(own.digest)
            for key, digest in own.values:
                found.setdefault(key, set()).add(digest)
            unresolved.update((u.name, u) for u in own.unresolved)
            stack.extend(reversed(own.refs))
        # Two objects can share a name (one decorator's wrapper around two functions): combine their digests.
        parts = {name: min(d) if len(d) == 1 else hash_struct(["parts", sorted(d)]) for name, d in found.items()}
        return _Trace(parts, tuple(sorted(unresolved.values(), key=lambda u: u.name)))

    def _is_code(self, obj: Any) -> bool:
        return isinstance(obj, types.FunctionType | type) and self._project_code(obj)

    def _project_code(self, obj: Any) -> bool:
        """Whether a function or class is the project's; a function by the module its code runs in."""
        namespace = getattr(obj, "__globals__", None)
        module = sys.modules.get(namespace.get("__name__", "")) if isinstance(namespace, dict) else None
        return self._is_project(module if module is not None else obj)

    def _own_part(self, obj: Any) -> _Own:
        """The part of one function or class alone, and the objects it refers to."""
        cached = self._own.get(id(obj))
        if cached is not None and cached.obj is obj:
            return cached
        name = qualified_name(obj)
        found = self._source_part(obj)
        code = getattr(obj, "__code__", None)
        if found is not None:
            digest, names = found
        elif isinstance(code, types.CodeType):
            digest, names = hash_struct(["bytecode", _code_struct(code)]), _code_names(code)
        else:
            digest, names = hash_struct(["opaque", name]), []
        if isinstance(code, types.CodeType):  # closure cells are read by name like globals
            names = [*names, *(v for v in code.co_freevars if v not in names)]
        refs: list[Any] = []
        values: dict[str, str] = {}
        unresolved: list[Unresolved] = []
        inner = wrapped_of(obj)
        if inner is not None:
            self._value(f"{name}.__wrapped__", inner, refs, values, unresolved)
        for key, value in self._resolve(obj, names):
            self._value(key, value, refs, values, unresolved)
        result = _Own(obj, name, digest, tuple(refs), tuple(values.items()), tuple(unresolved))
        self._own[id(obj)] = result
        return result

    def _value(
        self, key: str, value: Any, refs: list[Any], values: dict[str, str], unresolved: list[Unresolved]
    ) -> None:
        """Count one value that code reads: code it holds is followed, anything else becomes part `key`."""
        described = describe(value, self._project_code, qualified_name)
        if described is None:
            return
        refs.extend(described.refs)
        if not described.code_only:
            values[key] = hash_struct(["value", described.struct])
        if described.opaque:
            what = f"an instance of {type_name(value)}"
            if described.opaque[0] != type_name(value):
                what += f" holding a {described.opaque[0]}"
            unresolved.append(Unresolved(key, what))

    def _resolve(self, obj: Any, names: list[str]) -> list[tuple[str, Any]]:
        """The values that global names (and dotted chains through project modules) refer to, by binding."""
        namespace, prefix, closure = _namespace_of(obj)
        out: dict[str, Any] = {}
        for dotted in names:
            if dotted.startswith(IMPORTED):
                found = self._imported(dotted[len(IMPORTED) :], namespace)
                if found is not None:
                    out.setdefault(*found)
                continue
            head, *rest = dotted.split(".")
            if head not in namespace:
                continue
            value = namespace[head]
            key = f"{qualified_name(obj)}.{head}" if head in closure else f"{prefix}.{head}"
            for attr in rest:
                if not isinstance(value, types.ModuleType) or not self._is_project(value):
                    break
                if not hasattr(value, attr):
                    break
                key, value = f"{value.__name__}.{attr}", getattr(value, attr)
            out.setdefault(key, value)
        return list(out.items())

    def _imported(self, spec: str, namespace: dict[str, Any]) -> tuple[str, Any] | None:
        """What ``module:attr.chain`` (an import inside the code) names, if it is a project module that the
        code's own module imports too (the module itself, or something of it, is among its globals).

        That condition keeps the version a function of the code: a module that only the function imports is
        loaded or not depending on whether the function already ran in this process, so it is not followed
        (importing it here would run it); docs/reliability.md lists it among the blind spots.
        """
        ref, _, path = spec.partition(":")
        try:
            name = importlib.util.resolve_name(ref, str(namespace.get("__package__") or ""))
        except (ImportError, ValueError):
            return None
        value: Any = sys.modules.get(name)
        if value is None or not self._is_project(value):
            return None
        if not any(v is value or getattr(v, "__module__", None) == name for v in list(namespace.values())):
            return None
        key = name
        for attr in filter(None, path.split(".")):
            if not isinstance(value, types.ModuleType) or not self._is_project(value) or not hasattr(value, attr):
                break
            key, value = f"{value.__name__}.{attr}", getattr(value, attr)
        return key, value


def ast_part(node: ast.AST) -> tuple[str, list[str]]:
    """The digest of a def's or class's normalized AST and the global names it reads."""
    stripped = _strip(node)
    digest = hash_struct(["ast", ast.dump(stripped, annotate_fields=False, include_attributes=False)])
    return digest, _referenced_names(stripped)


def _namespace_of(obj: Any) -> tuple[dict[str, Any], str, set[str]]:
    """The names `obj`'s code can read, the module they belong to, and which of them are closure cells."""
    namespace: dict[str, Any] = {}
    module_name = getattr(obj, "__module__", "") or ""
    module = sys.modules.get(module_name)
    if module is not None:
        namespace.update(vars(module))
    own_globals = getattr(obj, "__globals__", None)
    if isinstance(own_globals, dict):
        namespace.update(own_globals)
        module_name = own_globals.get("__name__") or module_name
    code = getattr(obj, "__code__", None)
    closure = getattr(obj, "__closure__", None)
    cells: set[str] = set()
    if isinstance(code, types.CodeType) and closure:
        for var, cell in zip(code.co_freevars, closure, strict=False):
            try:
                namespace[var] = cell.cell_contents
            except ValueError:  # a cell not filled yet
                continue
            cells.add(var)
    return namespace, module_name or "?", cells


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
    imports = _local_imports(node)
    found: dict[str, None] = {}
    for sub in ast.walk(node):
        if isinstance(sub, ast.Attribute):
            chain = _dotted(sub)
            head, _, rest = (chain or "").partition(".")
            if chain and head not in local:
                found[chain] = None
            elif chain and head in imports:
                found[_imported_name(imports[head], rest)] = None
        elif isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load):
            if sub.id not in local:
                found[sub.id] = None
            elif sub.id in imports:
                found[_imported_name(imports[sub.id], "")] = None
    return list(found)


def _local_imports(node: ast.AST) -> dict[str, tuple[str, str]]:
    """Names bound by imports inside the code: name → (module as written, with its leading dots; attribute)."""
    out: dict[str, tuple[str, str]] = {}
    for sub in ast.walk(node):
        if isinstance(sub, ast.ImportFrom):
            module = "." * sub.level + (sub.module or "")
            out.update((a.asname or a.name, (module, a.name)) for a in sub.names if a.name != "*")
        elif isinstance(sub, ast.Import):
            for a in sub.names:
                bound = a.asname or a.name.split(".")[0]
                out[bound] = (a.name if a.asname else bound, "")
    return out


def _imported_name(binding: tuple[str, str], rest: str) -> str:
    module, attr = binding
    return f"{IMPORTED}{module}:{'.'.join(p for p in (attr, rest) if p)}"


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


def _code_names(code: types.CodeType) -> list[str]:
    """Global names a code object and the code nested in it (comprehensions, inner functions) may read."""
    names = dict.fromkeys(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names.update(dict.fromkeys(_code_names(const)))
    return list(names)


def _code_struct(code: types.CodeType) -> list[Any]:
    """A position-independent description of a code object (used when no source is available)."""
    consts = [_code_struct(c) if isinstance(c, types.CodeType) else repr(c) for c in code.co_consts]
    return [code.co_code, list(code.co_names), consts, code.co_argcount]
