"""Loads a project: imports its modules, collects its definitions, and resolves each asset's key material."""

from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.machinery
import json
import os
import sys
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import CodeType, ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

from cairn.config import Settings, load_settings
from cairn.core.asset import AssetDef
from cairn.core.bulk import collector_paused
from cairn.core.fingerprint import AST_FORMAT, Fingerprinter, Unresolved, ast_part, code_version
from cairn.core.graph import Graph, build_graph
from cairn.errors import ConfigError, DefinitionError, UsageError, did_you_mean
from cairn.hashing import digest_bytes, hash_struct

if TYPE_CHECKING:  # imported when a project defines them (see `_defined`)
    from cairn.core.automation import Schedule, Sensor
    from cairn.core.contracts import CheckDef
    from cairn.core.gates import GateDef

T = TypeVar("T")

_loaded_mtimes: dict[str, dict[str, int]] = {}


@dataclass(frozen=True, slots=True)
class Project:
    """A loaded project: its settings and its validated asset graph."""

    settings: Settings
    graph: Graph
    fingerprinter: Fingerprinter = field(compare=False)
    sources: SourceIndex = field(compare=False)
    schedules: tuple[Schedule, ...] = ()  # [[schedules]] of cairn.toml, then those the modules define
    sensors: tuple[Sensor, ...] = ()

    def code(self, asset: AssetDef) -> tuple[str, dict[str, str]]:
        """The code version of an asset and its parts (empty parts when `code_version=` overrides it)."""
        if asset.code_version is not None:
            return asset.code_version, {}
        if asset.fn is None:
            return "", {}
        parts = self.fingerprinter.parts(asset.fn)
        if asset.contract is not None:
            parts["cairn.contract"] = hash_struct(["contract", _describe_contract(asset.contract)])
        for check in asset.checks:
            if check.fn is not None:
                parts.update(self.fingerprinter.parts(check.fn))
            parts[f"cairn.check.{check.name}"] = hash_struct(["check", check.blocking, repr(check.drift)])
        for g in asset.gates:  # gates are part of the model's definition: editing one makes its results stale
            settings, functions = _gate_material(g)
            for fn in functions:
                parts.update(self.fingerprinter.parts(fn))
            parts[f"cairn.gate.{g.name}"] = hash_struct(["gate", settings])
        return code_version(parts), parts

    def unresolved(self, asset: AssetDef) -> list[Unresolved]:
        """Values an asset's code (and its checks') reads whose changes its code version cannot see."""
        if asset.code_version is not None or asset.fn is None:
            return []
        found = {u.name: u for u in self.fingerprinter.unresolved(asset.fn)}
        for check in asset.checks:
            if check.fn is not None:
                found.update((u.name, u) for u in self.fingerprinter.unresolved(check.fn))
        for g in asset.gates:
            for fn in _gate_material(g)[1]:
                found.update((u.name, u) for u in self.fingerprinter.unresolved(fn))
        return sorted(found.values(), key=lambda u: u.name)

    def save_code_cache(self) -> None:
        """Keep the code parts computed so far for the next process (see `SourceIndex`)."""
        self.sources.save()

    def params(
        self, profile: str | None = None, overrides: Mapping[str, Mapping[str, Any]] | None = None
    ) -> dict[str, dict[str, Any]]:
        """Each asset's params: its defaults, overlaid by ``[params]`` of cairn.toml, by a profile, by ``--set``."""
        resolved = {name: dict(a.params) for name, a in self.graph.assets.items()}
        _overlay(resolved, self.settings.params, "cairn.toml [params]", ConfigError)
        if profile is not None:
            if profile not in self.settings.profiles:
                known = list(self.settings.profiles)
                raise UsageError(
                    f"profile '{profile}' is not defined in cairn.toml.{did_you_mean(profile, known)} "
                    f"Defined profiles: {', '.join(known) or 'none'} (add a [profiles.{profile}] table)"
                )
            _overlay(resolved, self.settings.profiles[profile], f"[profiles.{profile}]", ConfigError)
        if overrides:
            _overlay(resolved, overrides, "--set", UsageError)
        return resolved


def _overlay(
    resolved: dict[str, dict[str, Any]],
    overlay: Mapping[str, Mapping[str, Any]],
    where: str,
    error: type[Exception],
) -> None:
    for asset, values in overlay.items():
        if asset not in resolved:
            raise error(f"{where}: asset '{asset}' is not defined.{did_you_mean(asset, resolved)}")
        for param, value in values.items():
            if param not in resolved[asset]:
                known = sorted(resolved[asset])
                raise error(
                    f"{where}: asset '{asset}' has no param '{param}'.{did_you_mean(param, known)} "
                    f"Its params: {', '.join(known) or 'none'}"
                )
            resolved[asset][param] = value


def load_project(project: str | os.PathLike[str] | Settings = ".") -> Project:
    """Read `cairn.toml`, import the project's modules and validate the asset graph."""
    with collector_paused():
        return _load_project(project)


def _load_project(project: str | os.PathLike[str] | Settings) -> Project:
    settings = project if isinstance(project, Settings) else load_settings(project)
    modules = [_import(settings, name) for name in settings.modules]
    defs: list[AssetDef] = []
    checks: list[CheckDef] = []
    gates: list[GateDef] = []
    schedules: list[Schedule] = list(settings.schedules)
    sensors: list[Sensor] = []
    for module in modules:
        defs.extend(_found(module, AssetDef))
        checks.extend(_defined(module, "cairn.core.contracts", "CheckDef"))
        gates.extend(_defined(module, "cairn.core.gates", "GateDef"))
        where = module.__name__
        schedules.extend(replace(s, location=s.location or where) for s in _defined(module, _AUTOMATION, "Schedule"))
        sensors.extend(replace(s, location=s.location or where) for s in _defined(module, _AUTOMATION, "Sensor"))
    if not defs:
        raise DefinitionError(
            f"no assets found in module(s) {', '.join(settings.modules)} of {settings.root}: define functions "
            "with @cairn.asset, or list the right modules in [project] modules of cairn.toml"
        )
    defs = _attach_gates(_attach_checks(defs, checks), gates)
    root = str(settings.root)
    sources = SourceIndex(settings.state_dir)
    fingerprinter = Fingerprinter(sources.part_of, _project_test(root))
    graph = build_graph(defs)
    automation: tuple[tuple[Schedule, ...], tuple[Sensor, ...]] = ((), ())
    if schedules or sensors:
        from cairn.core.automation import check_automation

        automation = check_automation(graph, schedules, sensors)
    loaded = Project(settings, graph, fingerprinter, sources, *automation)
    if settings.strict_code:
        _require_fingerprinted(loaded)
    return loaded


def _require_fingerprinted(project: Project) -> None:
    """``[engine] strict_code``: an asset whose code reads a value cairn cannot fingerprint is an error."""
    problems = []
    for name in project.graph.order:
        for u in project.unresolved(project.graph.assets[name]):
            problems.append(f"  asset '{name}' reads {u}")
    if problems:
        raise DefinitionError(
            "[engine] strict_code: the code version cannot see changes of these values:\n"
            + "\n".join(problems)
            + "\nMake each a simple constant (numbers, strings, small collections of them) or a project "
            "function, or set code_version= on the asset (and change it when the value changes)"
        )


def installed_versions(dists: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of distributions named by ``env=`` ("not installed" for missing ones)."""
    if not dists:
        return {}
    import importlib.metadata

    out = {}
    for dist in dists:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _import(settings: Settings, name: str) -> ModuleType:
    root = str(settings.root)
    if not sys.path or sys.path[0] != root:
        if root in sys.path:
            sys.path.remove(root)
        sys.path.insert(0, root)
    _install_source_finder(root)
    _forget_changed_modules(root)
    _forget_other_projects(root, name)
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            raise DefinitionError(
                f"module '{name}' listed in [project] modules of cairn.toml was not found in {root}: "
                f"create {name.replace('.', '/')}.py or fix the name"
            ) from exc
        raise DefinitionError(f"importing '{name}' failed: {exc}\n{_user_traceback(exc)}") from exc
    except DefinitionError:
        raise
    except Exception as exc:
        raise DefinitionError(
            f"importing '{name}' failed: {type(exc).__name__}: {exc}\n{_user_traceback(exc)}"
        ) from exc
    _loaded_mtimes[root] = _module_mtimes(root)
    return module


def _forget_changed_modules(root: str) -> None:
    """Drop the project's modules from `sys.modules` when any of their files changed since loading."""
    before = _loaded_mtimes.get(root)
    if before is None or before == _module_mtimes(root):
        return
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None) or ""
        if path.startswith(root + os.sep):
            del sys.modules[name]
            _drop_bytecode(path)
    importlib.invalidate_caches()


class _FromSource(importlib.machinery.SourceFileLoader):
    """Loads a project module from its source every time (a few ms), never from cached bytecode."""

    def get_code(self, fullname: str) -> Any:
        return self.source_to_code(self.get_data(self.path), self.path)


class _ProjectSourceFinder:
    """Routes modules under a project folder to `_FromSource`: the code that runs is the code fingerprinted.

    A meta path finder by its `find_spec` alone (`importlib.abc` would load `importlib.resources` and more)."""

    def __init__(self) -> None:
        self.roots: set[str] = set()

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        origin = getattr(spec, "origin", None) or ""
        if spec is None or not origin.endswith(".py") or not any(origin.startswith(r + os.sep) for r in self.roots):
            return spec
        spec.loader = _FromSource(fullname, origin)
        return spec


_finder = _ProjectSourceFinder()


def _install_source_finder(root: str) -> None:
    _finder.roots.add(root)
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)


def _drop_bytecode(path: str) -> None:
    """Remove a module's cached bytecode: it is validated by mtime seconds and size only, so an edit within
    the same second that keeps the size would otherwise be imported as the old code."""
    import importlib.util

    with contextlib.suppress(OSError, ValueError, NotImplementedError):
        os.remove(importlib.util.cache_from_source(path))


def _forget_other_projects(root: str, name: str) -> None:
    """Drop a same-named module that was imported from another project folder (tests, notebooks), and every
    module imported from another project's folder: its ``helpers`` would otherwise be this project's too."""
    own = root + os.sep
    others = tuple(r + os.sep for r in _finder.roots if r != root and not own.startswith(r + os.sep))
    for module_name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None) or ""
        if others and path.startswith(others) and not path.startswith(own):
            del sys.modules[module_name]
    top = name.split(".")[0]
    loaded = sys.modules.get(top)
    path = getattr(loaded, "__file__", None) or ""
    if loaded is None or path.startswith(root + os.sep):
        return
    for module_name in [m for m in sys.modules if m == top or m.startswith(top + ".")]:
        del sys.modules[module_name]
    importlib.invalidate_caches()


def _module_mtimes(root: str) -> dict[str, int]:
    out = {}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None) or ""
        if path.startswith(root + os.sep):
            try:
                out[path] = os.stat(path).st_mtime_ns
            except OSError:
                out[path] = -1
    return out


def _user_traceback(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    user = [f for f in frames if "importlib" not in f.filename and "/cairn/" not in f.filename]
    return "".join(traceback.format_list(user[-3:])).rstrip()


_AUTOMATION = "cairn.core.automation"


def _defined(module: ModuleType, home: str, name: str) -> list[Any]:
    """The definitions of class `name` of module `home` in a module's globals (as `_found`).

    Empty while `home` was never imported: no value can be an instance of a class that does not exist yet, and
    a pipeline without checks, gates or schedules does not create their classes.
    """
    loaded = sys.modules.get(home)
    return _found(module, getattr(loaded, name)) if loaded is not None else []


def _gate_material(g: GateDef) -> tuple[list[Any], tuple[Callable[..., Any], ...]]:
    from cairn.core.gates import gate_material

    return gate_material(g)


def _found(module: ModuleType, kind: type[T]) -> list[T]:
    """Definitions of one kind in a module's globals, also inside lists, tuples and dicts."""
    found: list[T] = []
    for value in vars(module).values():
        if isinstance(value, kind):
            found.append(value)
        elif isinstance(value, list | tuple):
            found.extend(v for v in value if isinstance(v, kind))
        elif isinstance(value, dict):
            found.extend(v for v in value.values() if isinstance(v, kind))
    unique: dict[int, T] = {id(d): d for d in found}
    return list(unique.values())


def _attach_checks(defs: list[AssetDef], checks: list[CheckDef]) -> list[AssetDef]:
    names = {d.name for d in defs}
    by_asset: dict[str, list[CheckDef]] = {}
    for c in checks:
        if c.asset not in names:
            raise DefinitionError(
                f"check '{c.name}' is defined for asset '{c.asset}', which does not exist."
                f"{did_you_mean(c.asset, names)}"
            )
        by_asset.setdefault(c.asset, []).append(c)
    return [replace(d, checks=tuple(by_asset[d.name])) if d.name in by_asset else d for d in defs]


def _attach_gates(defs: list[AssetDef], gates: list[GateDef]) -> list[AssetDef]:
    by_name = {d.name: d for d in defs}
    by_asset: dict[str, list[GateDef]] = {}
    for g in gates:
        if g.asset not in by_name:
            raise DefinitionError(
                f"gate '{g.name}' is defined for asset '{g.asset}', which does not exist."
                f"{did_you_mean(g.asset, by_name)} Name a kind='model' asset in gate(...)"
            )
        by_asset.setdefault(g.asset, []).append(g)
    if by_asset:
        from cairn.core.gates import check_gates

        for name, found in by_asset.items():
            check_gates(by_name[name], found)
    return [replace(d, gates=tuple(by_asset[d.name])) if d.name in by_asset else d for d in defs]


def _describe_contract(contract: Any) -> str:
    to_yaml = getattr(contract, "to_yaml", None)
    if callable(to_yaml):  # a pandera schema: its repr may hold memory addresses
        with contextlib.suppress(Exception):
            return str(to_yaml())
    return repr(contract)


def _project_test(root: str) -> Callable[[Any], bool]:
    """Whether an object's code belongs to the project (a file under its folder, not an environment)."""
    prefix = root + os.sep
    cache: dict[str, bool] = {}

    def is_project(obj: Any) -> bool:
        module_name = obj.__name__ if isinstance(obj, ModuleType) else getattr(obj, "__module__", None)
        if not module_name:
            return False
        if module_name not in cache:
            module = sys.modules.get(module_name)
            path = getattr(module, "__file__", None) or ""
            cache[module_name] = (
                path.startswith(prefix)
                and "site-packages" not in path
                and f"{os.sep}.venv{os.sep}" not in path[len(prefix) - 1 :]
            )
        return cache[module_name]

    return is_project


CODE_CACHE = "code-cache.json"
CODE_CACHE_FILES = 512  # source files (by content) whose parts are kept


class SourceIndex:
    """Finds the AST of a function or class in its source file and normalizes it, remembering the result.

    A part depends only on the bytes of its file, its place in the file, the Python version (whose AST shape
    differs) and cairn's normalization, so parts are kept in ``.cairn/code-cache.json`` under the BLAKE3 of
    the file: an unchanged project gets its code versions without parsing anything. A missing, unreadable or
    foreign cache file is ignored and rewritten.
    """

    def __init__(self, state_dir: Path | None = None) -> None:
        self._files: dict[str, dict[str, list[ast.AST]]] = {}
        self._digests: dict[str, str | None] = {}
        self._path = state_dir / CODE_CACHE if state_dir is not None else None
        self._header = {"format": AST_FORMAT, "python": sys.implementation.cache_tag}
        self._parts: dict[str, dict[str, list[Any]]] = self._read()
        self._used: set[str] = set()
        self._dirty = False

    def part_of(self, obj: Any) -> tuple[str, list[str]] | None:
        """The normalized AST digest of `obj` and the global names it reads; None without source."""
        code = _code_of(obj)
        path = code.co_filename if code is not None else _module_file(obj)
        place = f"{_qualname(obj)}@{code.co_firstlineno if code is not None else ''}"
        digest = self._digest(path)
        if digest is None:
            return None
        self._used.add(digest)
        known = self._parts.get(digest, {}).get(place)
        if known is not None:
            return known[0], list(known[1])
        node = self.node_of(obj)
        if node is None:
            return None
        part = ast_part(node)
        self._parts.setdefault(digest, {})[place] = [part[0], part[1]]
        self._dirty = True
        return part

    def node_of(self, obj: Any) -> ast.AST | None:
        code = _code_of(obj)
        path = code.co_filename if code is not None else _module_file(obj)
        nodes = self._index(path).get(_qualname(obj), [])
        if code is None:
            return nodes[-1] if nodes else None
        for node in nodes:
            first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])  # type: ignore[attr-defined]
            if first == code.co_firstlineno or node.lineno == code.co_firstlineno:  # type: ignore[attr-defined]
                return node
        return None

    def save(self) -> None:
        """Write the parts back (atomically) if any were computed; keeps the files used most recently."""
        if not self._dirty or self._path is None:
            return
        kept = {d: e for d, e in self._parts.items() if d not in self._used}
        kept.update((d, self._parts[d]) for d in self._used if d in self._parts)
        files = dict(list(kept.items())[-CODE_CACHE_FILES:])
        tmp = self._path.with_name(f"{CODE_CACHE}.{os.getpid()}.tmp")
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({**self._header, "files": files}), encoding="utf-8")
            os.replace(tmp, self._path)
        except OSError:
            tmp.unlink(missing_ok=True)  # a read-only project still runs; it just computes its parts again
        self._dirty = False

    def _read(self) -> dict[str, dict[str, list[Any]]]:
        if self._path is None:
            return {}
        try:
            stored = json.loads(self._path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(stored, dict) or any(stored.get(k) != v for k, v in self._header.items()):
            return {}
        files = stored.get("files")
        if not isinstance(files, dict):
            return {}
        return {
            digest: {place: part for place, part in entries.items() if _valid_part(part)}
            for digest, entries in files.items()
            if isinstance(entries, dict)
        }

    def _digest(self, path: str) -> str | None:
        if path not in self._digests:
            try:
                self._digests[path] = digest_bytes(Path(path).read_bytes())
            except (OSError, ValueError):
                self._digests[path] = None
        return self._digests[path]

    def _index(self, path: str) -> dict[str, list[ast.AST]]:
        if path not in self._files:
            self._files[path] = _index_file(path)
        return self._files[path]


def _code_of(obj: Any) -> CodeType | None:
    code = getattr(obj, "__code__", None)
    return code if isinstance(code, CodeType) else None


def _qualname(obj: Any) -> str:
    """Where a function is defined in its file: its code's own qualname, which `functools.wraps` does not
    overwrite (a wrapper's ``__qualname__`` is the wrapped function's)."""
    code = _code_of(obj)
    return code.co_qualname if code is not None else str(getattr(obj, "__qualname__", ""))


def _module_file(obj: Any) -> str:
    module = sys.modules.get(getattr(obj, "__module__", ""))
    return getattr(module, "__file__", None) or ""


def _valid_part(part: Any) -> bool:
    return (
        isinstance(part, list)
        and len(part) == 2
        and isinstance(part[0], str)
        and isinstance(part[1], list)
        and all(isinstance(name, str) for name in part[1])
    )


def _index_file(path: str) -> dict[str, list[ast.AST]]:
    try:
        tree = ast.parse(Path(path).read_bytes(), filename=path)
    except (OSError, SyntaxError, ValueError):
        return {}
    index: dict[str, list[ast.AST]] = {}

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                qualname = prefix + node.name
                index.setdefault(qualname, []).append(node)
                inner = qualname + (".<locals>." if not isinstance(node, ast.ClassDef) else ".")
                visit(node.body, inner)
            elif isinstance(node, ast.If | ast.Try | ast.With | ast.For | ast.While):
                for block in ("body", "orelse", "finalbody", "handlers"):
                    for child in getattr(node, block, []):
                        visit(getattr(child, "body", [child]) if block == "handlers" else [child], prefix)

    visit(tree.body, "")
    return index
