"""Asset and source definitions: immutable values built by the `@asset` decorator and `source()`."""

from __future__ import annotations

import contextlib
import inspect
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar, overload

from cairn.core.keys import validate_name
from cairn.core.partitions import (
    AllPartitions,
    InputMapping,
    Latest,
    MultiPartitions,
    PartitionsDef,
    StaticPartitions,
    TimePartitions,
    TimeWindow,
    Window,
)
from cairn.core.retry import Retry
from cairn.errors import DefinitionError
from cairn.hashing import check_hashable

if TYPE_CHECKING:
    from cairn.core.contracts import CheckDef, Column
    from cairn.core.gates import GateDef  # gates.py builds on this module

# Contracts, freshness policies and their records are imported by the options that use them: a pipeline
# without them does not create their classes (every command loads the definitions).

T = TypeVar("T")

KINDS = ("data", "model")
CONTEXT_NAMES = ("ctx", "context")


@dataclass(frozen=True, slots=True)
class Resources:
    """What one attempt of a step needs from the executor: CPU cores and memory."""

    cpu: float = 1.0
    memory_mb: int = 0

    def __post_init__(self) -> None:
        if self.cpu < 0 or self.memory_mb < 0:
            raise DefinitionError(f"Resources(cpu={self.cpu}, memory_mb={self.memory_mb}) must not be negative")


@dataclass(frozen=True, slots=True)
class Input:
    """One input of an asset: the function parameter it fills and the asset it comes from."""

    param: str
    asset: str
    annotation: str = ""
    mapping: str = "identity"
    n: int = 0


@dataclass(frozen=True, slots=True)
class AssetDef:
    """A named, versioned piece of data produced by a Python function (or observed, for a source)."""

    name: str
    fn: Callable[..., Any] | None
    inputs: tuple[Input, ...] = ()
    context_param: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    retry: Retry | None = None
    timeout: float | None = None
    resources: Resources = field(default_factory=Resources)
    pool: str | None = None
    uses: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    code_version: str | None = None
    env: tuple[str, ...] = ()
    cache: bool = True
    io: str | None = None
    kind: str = "data"
    path: str | None = None
    partitions: PartitionsDef | None = None
    contract: Any = None
    requires: Mapping[str, Mapping[str, Column]] = field(default_factory=dict)
    checks: tuple[CheckDef, ...] = ()
    gates: tuple[GateDef, ...] = ()  # of a kind="model" asset, attached by `load_project`
    max_age: float | None = None  # freshness policy: how old (seconds) its newest materialization may get
    on_stale: str = "materialize"  # what the daemon does past max_age: materialize | alert
    location: str = ""
    owners: tuple[str, ...] = ()  # who its alerts go to ([owners] in cairn.toml routes them)
    on_failure: str | None = None  # the asset or job the daemon runs when it fails
    on_violation: str | None = None  # ... when it breaks its contract, a blocking check or a drift check

    @property
    def is_source(self) -> bool:
        return self.fn is None

    @property
    def deps(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(i.asset for i in self.inputs))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the underlying function directly (for unit tests of pipeline code)."""
        if self.fn is None:
            raise DefinitionError(f"source '{self.name}' has no function to call")
        return self.fn(*args, **kwargs)


_NO_RESOURCES = Resources()  # immutable: every asset without resources= shares it
_UNOBSERVED = {"owners": (), "on_failure": None, "on_violation": None}  # what `_observed` gives for no options
_ALWAYS_FRESH = {"max_age": None, "on_stale": "materialize"}  # ... and `freshness_options` for no policy


@overload
def asset(fn: Callable[..., Any], /) -> AssetDef: ...


@overload
def asset(
    fn: None = None,
    /,
    *,
    name: str | None = None,
    params: Mapping[str, Any] | None = None,
    partitions: PartitionsDef | None = None,
    ins: Mapping[str, str | InputMapping] | None = None,
    retry: Retry | None = None,
    timeout: float | None = None,
    resources: Resources | None = None,
    pool: str | None = None,
    uses: Iterable[str] = (),
    tags: Mapping[str, str] | None = None,
    code_version: str | None = None,
    env: Iterable[str] = (),
    cache: bool = True,
    io: str | None = None,
    kind: str = "data",
    contract: Any = None,
    requires: Mapping[str, Mapping[str, str | Column]] | None = None,
    max_age: str | float | timedelta | None = None,
    on_stale: str = "materialize",
    owners: Iterable[str] = (),
    on_failure: str | None = None,
    on_violation: str | None = None,
) -> Callable[[Callable[..., Any]], AssetDef]: ...


def asset(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    params: Mapping[str, Any] | None = None,
    partitions: PartitionsDef | None = None,
    ins: Mapping[str, str | InputMapping] | None = None,
    retry: Retry | None = None,
    timeout: float | None = None,
    resources: Resources | None = None,
    pool: str | None = None,
    uses: Iterable[str] = (),
    tags: Mapping[str, str] | None = None,
    code_version: str | None = None,
    env: Iterable[str] = (),
    cache: bool = True,
    io: str | None = None,
    kind: str = "data",
    contract: Any = None,
    requires: Mapping[str, Mapping[str, str | Column]] | None = None,
    max_age: str | float | timedelta | None = None,
    on_stale: str = "materialize",
    owners: Iterable[str] = (),
    on_failure: str | None = None,
    on_violation: str | None = None,
) -> AssetDef | Callable[[Callable[..., Any]], AssetDef]:
    """Define an asset from a function; its parameters name its inputs (see DESIGN §2).

    Usable bare (``@asset``) or with options (``@asset(params={"k": 1})``), and as a plain call
    (``asset(name="n1", params={"k": 1})(fn)``) to build many assets from one function.
    """

    def build(func: Callable[..., Any]) -> AssetDef:
        # An explicit name="" is refused by validate_name, not replaced by the function's name.
        asset_name: str = name if name is not None else str(getattr(func, "__name__", ""))
        shape, context_param, names, where = _shape(asset_name, func)
        validate_name(asset_name)
        return AssetDef(
            name=asset_name,
            fn=func,
            inputs=_inputs(asset_name, shape, names, ins or {}),
            context_param=context_param,
            params=_checked_params(asset_name, params or {}),
            # Options left at their defaults need no checks (a loop may define thousands of assets).
            partitions=_checked_partitions(asset_name, partitions) if partitions is not None else None,
            retry=_checked(asset_name, "retry", retry, Retry) if retry is not None else None,
            timeout=_checked_timeout(asset_name, timeout) if timeout is not None else None,
            resources=_checked(asset_name, "resources", resources, Resources) or _NO_RESOURCES,
            pool=validate_name(pool, "pool") if pool is not None else None,
            uses=tuple(validate_name(u, "external system") for u in _strings(asset_name, "uses", uses))
            if uses != ()
            else (),
            tags=_checked_tags(asset_name, tags) if tags else {},
            code_version=code_version,
            env=tuple(_strings(asset_name, "env", env)) if env != () else (),
            cache=bool(cache),
            io=io,
            kind=_checked_kind(asset_name, kind),
            contract=_checked_contract(asset_name, contract) if contract is not None else None,
            requires=_checked_requires(asset_name, requires) if requires else {},
            **(
                _freshness(asset_name, max_age, on_stale)
                if max_age is not None or on_stale != "materialize"
                else _ALWAYS_FRESH
            ),
            location=where,
            **(
                _observed(asset_name, owners, on_failure, on_violation)
                if owners != () or on_failure or on_violation
                else _UNOBSERVED
            ),
        )

    if fn is not None:
        return build(fn)
    return build


def source(
    name: str,
    path: str,
    *,
    partitions: PartitionsDef | None = None,
    contract: Any = None,
    tags: Mapping[str, str] | None = None,
    owners: Iterable[str] = (),
    on_failure: str | None = None,
    on_violation: str | None = None,
) -> AssetDef:
    """Declare a file that cairn does not compute; its data version is the hash of its bytes.

    Args:
        name: the asset name that consumers use as a parameter name.
        path: the file, relative to the project folder (or absolute); with `partitions`, a template
            with ``{partition}``, e.g. ``"data/raw/events_{partition}.parquet"``.
        partitions: one file per partition key.
        contract: a `Contract` (or pandera schema) the file's table must meet to be ready for its dependents.
        tags: free-form labels for selection (``tag:key=value``).
        owners, on_failure, on_violation: as for `asset` (who is alerted; what the daemon runs when the file is
            missing or breaks its contract).
    """
    validate_name(name)
    if not isinstance(path, str) or not path:
        raise DefinitionError(f"source '{name}' needs a path, e.g. source('{name}', path='data/{name}.parquet')")
    if partitions is not None and "{partition}" not in path:
        raise DefinitionError(
            f"source '{name}' is partitioned, so its path needs a {{partition}} placeholder, "
            f"e.g. 'data/{name}_{{partition}}.parquet'"
        )
    if partitions is None and "{partition}" in path:
        raise DefinitionError(f"source '{name}': the path has {{partition}} but no partitions= was given")
    return AssetDef(
        name=name,
        fn=None,
        path=path,
        partitions=_checked_partitions(name, partitions),
        contract=_checked_contract(name, contract),
        tags=_checked_tags(name, tags or {}),
        cache=True,
        **_observed(name, owners, on_failure, on_violation),
    )


def _freshness(asset_name: str, max_age: Any, on_stale: str) -> dict[str, Any]:
    from cairn.core.automation import freshness_options

    return freshness_options(asset_name, max_age, on_stale)


def _observed(asset_name: str, owners: Iterable[str], on_failure: Any, on_violation: Any) -> dict[str, Any]:
    """The observability options: owner names, and the remediation asset or job names (checked when the daemon
    runs them: a job is not an asset)."""
    remedies = {}
    for option, value in (("on_failure", on_failure), ("on_violation", on_violation)):
        if value is not None and not isinstance(value, str):
            raise DefinitionError(f"asset '{asset_name}': {option}= must name an asset or a job, got {value!r}")
        remedies[option] = validate_name(value, f"{option} target") if value else None
    names = tuple(validate_name(owner, "owner") for owner in _strings(asset_name, "owners", owners))
    return {"owners": names, **remedies}


def _location(func: Callable[..., Any]) -> str:
    code = getattr(func, "__code__", None)
    if code is None:
        return getattr(func, "__module__", "?")
    return f"{code.co_filename}:{code.co_firstlineno}"


def _annotation_name(annotation: Any) -> str:
    if annotation is inspect.Parameter.empty:
        return ""
    if isinstance(annotation, str):
        return annotation
    return f"{getattr(annotation, '__module__', '')}.{getattr(annotation, '__qualname__', repr(annotation))}"


def _is_context(param: inspect.Parameter) -> bool:
    annotation = _annotation_name(param.annotation)
    return annotation.rsplit(".", 1)[-1] == "Context" or (param.name in CONTEXT_NAMES and not annotation)


@dataclass(frozen=True, slots=True)
class _Param:
    """What `asset` needs of one parameter of a function."""

    name: str
    annotation: str
    context: bool
    variadic: bool


# One function often defines thousands of assets (``asset(name=..., params=...)(fn)`` in a loop): its
# signature is read once. Weak keys: a reloaded project's old functions are dropped with it.
# The parameters, the context's name, all names, and where the function is defined.
_Shape = tuple[tuple[_Param, ...], str | None, frozenset[str], str]
_shapes: weakref.WeakKeyDictionary[Callable[..., Any], _Shape] = weakref.WeakKeyDictionary()


def _shape(asset_name: str, func: Callable[..., Any]) -> _Shape:
    try:
        found = _shapes.get(func)
    except TypeError:  # not hashable or not weakly referenceable: read it every time
        found = None
    if found is not None:
        return found
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError) as exc:
        raise DefinitionError(f"asset '{asset_name}': cannot read the function's signature ({exc})") from exc
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    params = tuple(
        _Param(p.name, _annotation_name(p.annotation), _is_context(p), p.kind in variadic)
        for p in signature.parameters.values()
    )
    context = next((p.name for p in params if p.context), None)
    found = params, context, frozenset(p.name for p in params), _location(func)
    with contextlib.suppress(TypeError):
        _shapes[func] = found
    return found


def _inputs(
    asset_name: str, shape: tuple[_Param, ...], names: frozenset[str], ins: Mapping[str, str | InputMapping]
) -> tuple[Input, ...]:
    inputs = []
    for param in shape:
        if param.variadic:
            raise DefinitionError(
                f"asset '{asset_name}': *args/**kwargs parameter '{param.name}' cannot name an input; "
                "list each input as its own parameter"
            )
        if param.context:
            continue
        upstream = ins.get(param.name, param.name)
        annotation = param.annotation
        if isinstance(upstream, str):
            inputs.append(Input(param.name, upstream, annotation))
        elif isinstance(upstream, Window):
            inputs.append(Input(param.name, upstream.asset, annotation, "window", upstream.n))
        elif isinstance(upstream, AllPartitions):
            inputs.append(Input(param.name, upstream.asset, annotation, "all"))
        elif isinstance(upstream, Latest):
            inputs.append(Input(param.name, upstream.asset, annotation, "latest"))
        elif isinstance(upstream, TimeWindow):
            inputs.append(Input(param.name, upstream.asset, annotation, "timewindow"))
        else:
            raise DefinitionError(
                f"asset '{asset_name}': ins['{param.name}'] must be an asset name or a mapping "
                f"(Window, TimeWindow, AllPartitions, Latest), got {upstream!r}"
            )
    if not ins.keys() <= names:
        unknown = sorted(ins.keys() - names)
        raise DefinitionError(
            f"asset '{asset_name}': ins= maps {unknown} but the function has no such parameter "
            f"(parameters: {sorted(names)})"
        )
    return tuple(inputs)


def _checked_contract(asset_name: str, contract: Any) -> Any:
    if contract is None:
        return None
    from cairn.core.contracts import Contract

    if isinstance(contract, Contract):
        return contract
    if type(contract).__module__.split(".")[0] == "pandera":
        return contract
    raise DefinitionError(
        f"asset '{asset_name}': contract= must be a cairn.Contract(...) or a pandera schema, got {contract!r}"
    )


def _checked_requires(
    asset_name: str, requires: Mapping[str, Mapping[str, str | Column]]
) -> dict[str, dict[str, Column]]:
    from cairn.core.contracts import Column, col

    out: dict[str, dict[str, Column]] = {}
    for param, columns in requires.items():
        if not isinstance(columns, Mapping):
            raise DefinitionError(
                f"asset '{asset_name}': requires['{param}'] must map column names to types, "
                f"e.g. requires={{'{param}': {{'user_id': 'int64'}}}}"
            )
        out[param] = {name: rule if isinstance(rule, Column) else col(rule) for name, rule in columns.items()}
    return out


def _checked_partitions(asset_name: str, partitions: Any) -> PartitionsDef | None:
    if partitions is not None and not isinstance(partitions, TimePartitions | StaticPartitions | MultiPartitions):
        raise DefinitionError(
            f"asset '{asset_name}': partitions= must come from cairn.daily(...), hourly, weekly, monthly, "
            f"static(...) or product(...), got {partitions!r}"
        )
    return partitions


def _checked_params(asset_name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(params, Mapping) or not all(isinstance(k, str) for k in params):
        raise DefinitionError(f"asset '{asset_name}': params= must be a dict with string keys, got {params!r}")
    own = dict(params)  # the asset's own copy: a caller changing its dict later changes no definition
    try:
        check_hashable(own)
    except TypeError as exc:
        raise DefinitionError(
            f"asset '{asset_name}': params must be plain values (numbers, strings, booleans, lists, dicts): {exc}"
        ) from exc
    return own


def _checked(asset_name: str, option: str, value: Any, cls: type[T]) -> T | None:
    if value is not None and not isinstance(value, cls):
        raise DefinitionError(
            f"asset '{asset_name}': {option}= must be a cairn.{cls.__name__}, got {type(value).__name__}"
        )
    return value


def _checked_timeout(asset_name: str, timeout: float | None) -> float | None:
    if timeout is not None and (not isinstance(timeout, int | float) or timeout <= 0):
        raise DefinitionError(f"asset '{asset_name}': timeout= must be a positive number of seconds")
    return float(timeout) if timeout is not None else None


def _strings(asset_name: str, option: str, values: Iterable[str]) -> list[str]:
    if isinstance(values, str):
        return [values]
    out = list(values)
    if not all(isinstance(v, str) for v in out):
        raise DefinitionError(f"asset '{asset_name}': {option}= must be a list of names, got {out!r}")
    return out


def _checked_tags(asset_name: str, tags: Mapping[str, str]) -> dict[str, str]:
    if not isinstance(tags, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
        raise DefinitionError(f"asset '{asset_name}': tags= must map strings to strings, got {tags!r}")
    return dict(tags)


def _checked_kind(asset_name: str, kind: str) -> str:
    if kind not in KINDS:
        raise DefinitionError(f"asset '{asset_name}': kind={kind!r} is not one of {list(KINDS)}")
    return kind
