"""`cairn.toml` → frozen `Settings`; every malformed entry is a `ConfigError` that names the fix."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cairn.core.keys import validate_name
from cairn.core.retry import BreakerPolicy, Retry
from cairn.errors import ConfigError, DefinitionError, UsageError, did_you_mean

CONFIG_FILE = "cairn.toml"
EXECUTOR_KINDS = ("inline", "thread", "process", "dask", "ray")

_MODULE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false"}
_SECTIONS = ("project", "storage", "executor", "defaults", "params", "profiles", "pools", "circuit_breakers", "engine")
_KEYS: dict[str, tuple[str, ...]] = {
    "project": ("name", "modules", "seed"),
    "storage": ("artifacts", "artifacts_options", "database"),
    "executor": ("kind", "workers", "address", "start"),
    "defaults": ("retry", "timeout"),
    "engine": ("heartbeat_s", "lease_ttl_s", "stale_after_s", "strict_code"),
}


@dataclass(frozen=True, slots=True)
class Settings:
    """A project's configuration, resolved and validated."""

    root: Path
    name: str
    modules: tuple[str, ...]
    seed: int = 0
    artifacts: str = ".cairn/artifacts"
    artifacts_options: Mapping[str, Any] = field(default_factory=dict)
    database: str = "sqlite:///.cairn/cairn.db"
    executor: str = "process"
    workers: int = 0
    executor_address: str | None = None
    executor_start: str = "fork"
    retry: Retry = field(default_factory=Retry)
    timeout: float | None = None
    params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    profiles: Mapping[str, Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)
    pools: Mapping[str, int] = field(default_factory=dict)
    breakers: Mapping[str, BreakerPolicy] = field(default_factory=dict)
    heartbeat_s: float = 5.0
    lease_ttl_s: float = 60.0
    stale_after_s: float = 120.0
    strict_code: bool = False

    @property
    def state_dir(self) -> Path:
        """Where cairn keeps local state next to the project (stat cache, checkpoints, scratch)."""
        return self.root / ".cairn"

    def worker_count(self) -> int:
        return self.workers if self.workers > 0 else (os.cpu_count() or 1)


def find_config(start: str | os.PathLike[str] = ".") -> Path:
    """The project folder: `start` itself, which must hold a `cairn.toml`."""
    root = Path(start).resolve()
    if not (root / CONFIG_FILE).is_file():
        raise ConfigError(
            f"no {CONFIG_FILE} in {root}: run `cairn init {start}` to create a project there, "
            "or pass -C/--project DIR to point at one"
        )
    return root


def load_settings(project: str | os.PathLike[str] = ".") -> Settings:
    """Read and validate `cairn.toml` of the project folder."""
    root = find_config(project)
    path = root / CONFIG_FILE
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    return parse_settings(data, root)


def parse_settings(data: Mapping[str, Any], root: Path) -> Settings:
    """Validate a parsed `cairn.toml` document."""
    for section in data:
        if section not in _SECTIONS:
            raise ConfigError(
                f"{CONFIG_FILE}: unknown section [{section}].{did_you_mean(section, _SECTIONS)} "
                f"Known sections: {', '.join(_SECTIONS)}"
            )
    project = _table(data, "project")
    storage = _table(data, "storage")
    executor = _table(data, "executor")
    defaults = _table(data, "defaults")
    engine = _table(data, "engine")
    name = project.get("name", root.name)
    modules = project.get("modules", ["pipeline"])
    if isinstance(modules, str):
        modules = [modules]
    if not isinstance(modules, list) or not all(isinstance(m, str) and _MODULE_RE.match(m) for m in modules):
        raise ConfigError(f'{CONFIG_FILE}: [project] modules must be a list of module names, e.g. ["pipeline"]')
    kind = executor.get("kind", "process")
    if kind not in EXECUTOR_KINDS:
        raise ConfigError(
            f"{CONFIG_FILE}: [executor] kind = {kind!r} is not one of {', '.join(EXECUTOR_KINDS)}."
            f"{did_you_mean(str(kind), EXECUTOR_KINDS)}"
        )
    return Settings(
        root=root,
        name=_typed(name, str, "[project] name"),
        modules=tuple(modules),
        seed=_typed(project.get("seed", 0), int, "[project] seed"),
        artifacts=_typed(storage.get("artifacts", ".cairn/artifacts"), str, "[storage] artifacts"),
        artifacts_options=_storage_options(storage.get("artifacts_options", {})),
        database=_typed(storage.get("database", "sqlite:///.cairn/cairn.db"), str, "[storage] database"),
        executor=kind,
        workers=_non_negative(executor.get("workers", 0), "[executor] workers"),
        executor_address=_address(executor.get("address")),
        executor_start=_choice(executor.get("start", "fork"), ("fork", "spawn"), "[executor] start"),
        retry=_retry(defaults.get("retry", {}), "[defaults] retry"),
        timeout=_timeout(defaults.get("timeout")),
        params=_overlay_table(data.get("params", {}), "[params]"),
        profiles=_profiles(data.get("profiles", {})),
        pools=_pools(data.get("pools", {})),
        breakers=_breakers(data.get("circuit_breakers", {})),
        heartbeat_s=float(_positive(engine.get("heartbeat_s", 5.0), "[engine] heartbeat_s")),
        lease_ttl_s=float(_positive(engine.get("lease_ttl_s", 60.0), "[engine] lease_ttl_s")),
        stale_after_s=float(_positive(engine.get("stale_after_s", 120.0), "[engine] stale_after_s")),
        strict_code=_typed(engine.get("strict_code", False), bool, "[engine] strict_code"),
    )


def _address(value: Any) -> str | None:
    """``[executor] address``: where the dask or ray executor finds its cluster (absent: it starts one)."""
    if value is None:
        return None
    address: str = _typed(value, str, "[executor] address").strip()
    return address or None


def _table(data: Mapping[str, Any], section: str) -> Mapping[str, Any]:
    table = data.get(section, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{CONFIG_FILE}: [{section}] must be a table")
    known = _KEYS.get(section)
    if known is not None:
        for key in table:
            if key not in known:
                raise ConfigError(
                    f"{CONFIG_FILE}: unknown key '{key}' in [{section}].{did_you_mean(key, known)} "
                    f"Known keys: {', '.join(known)}"
                )
    return table


def _typed(value: Any, kind: type, where: str) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{CONFIG_FILE}: {where} must be {_TYPE_NAMES.get(kind, kind.__name__)}, got {value!r}")
    return value


def _choice(value: Any, choices: tuple[str, ...], where: str) -> str:
    if value not in choices:
        raise ConfigError(f"{CONFIG_FILE}: {where} = {value!r} is not one of {', '.join(choices)}")
    return str(value)


def _non_negative(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"{CONFIG_FILE}: {where} must be an integer >= 0 (0 = number of cores), got {value!r}")
    return value


def _positive(value: Any, where: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{CONFIG_FILE}: {where} must be a positive number, got {value!r}")
    return float(value)


def _timeout(value: Any) -> float | None:
    return None if value is None else _positive(value, "[defaults] timeout")


def _storage_options(value: Any) -> dict[str, Any]:
    """The fsspec storage options of the artifact store, a plain dict (step jobs carry it to workers)."""
    if not isinstance(value, dict):
        raise ConfigError(
            f"{CONFIG_FILE}: [storage] artifacts_options must be a table of fsspec storage options, e.g. "
            '{ endpoint_url = "http://127.0.0.1:9000", client_kwargs = { region_name = "eu-west-1" } }, '
            f"got {value!r}"
        )
    return dict(value)


def _retry(value: Any, where: str) -> Retry:
    if not isinstance(value, dict):
        raise ConfigError(f"{CONFIG_FILE}: {where} must be a table like {{ max_attempts = 3, backoff = 1.0 }}")
    known = ("max_attempts", "backoff", "factor", "max_delay", "jitter")
    for key in value:
        if key not in known:
            raise ConfigError(f"{CONFIG_FILE}: unknown key '{key}' in {where}.{did_you_mean(key, known)}")
    try:
        return Retry(**value)
    except (DefinitionError, TypeError) as exc:
        raise ConfigError(f"{CONFIG_FILE}: {where}: {exc}") from exc


def _profiles(value: Any) -> dict[str, dict[str, dict[str, Any]]]:
    if not isinstance(value, dict):
        raise ConfigError(f"{CONFIG_FILE}: [profiles] must hold tables like [profiles.NAME]")
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for profile, overlay in value.items():
        _name(profile, "profile")
        out[profile] = _overlay_table(overlay, f"[profiles.{profile}]")
    return out


def _overlay_table(value: Any, where: str) -> dict[str, dict[str, Any]]:
    """A params overlay: asset name → table of param values (checked against the assets when a project loads)."""
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise ConfigError(
            f"{CONFIG_FILE}: {where} must map asset names to param tables, e.g. train = {{ num_trees = 1600 }}"
        )
    return {asset: dict(params) for asset, params in value.items()}


def _pools(value: Any) -> dict[str, int]:
    if not isinstance(value, dict):
        raise ConfigError(f"{CONFIG_FILE}: [pools] must map pool names to slot counts, e.g. warehouse = 2")
    for pool, slots in value.items():
        _name(pool, "pool")
        if not isinstance(slots, int) or isinstance(slots, bool) or slots < 1:
            raise ConfigError(f"{CONFIG_FILE}: [pools] {pool} must be an integer >= 1, got {slots!r}")
    return dict(value)


def _breakers(value: Any) -> dict[str, BreakerPolicy]:
    if not isinstance(value, dict):
        raise ConfigError(
            f"{CONFIG_FILE}: [circuit_breakers] must map system names to tables, "
            "e.g. warehouse = { failures = 5, cooldown = 30 }"
        )
    out = {}
    for system, spec in value.items():
        _name(system, "external system")
        if not isinstance(spec, dict) or set(spec) - {"failures", "cooldown"}:
            raise ConfigError(f"{CONFIG_FILE}: [circuit_breakers] {system} must be a table with failures and cooldown")
        out[system] = BreakerPolicy(
            failures=int(_positive(spec.get("failures", 5), f"[circuit_breakers] {system}.failures")),
            cooldown=_positive(spec.get("cooldown", 30.0), f"[circuit_breakers] {system}.cooldown"),
        )
    return out


def _name(value: Any, what: str) -> str:
    try:
        return validate_name(value, what)
    except DefinitionError as exc:
        raise ConfigError(f"{CONFIG_FILE}: {exc}") from exc


def parse_overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    """Param overrides from ``asset.param=value`` strings (`cairn run --set`); a value is a TOML literal
    (``14``, ``true``, ``[1, 2]``, ``"x"``), else the plain string."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        target, eq, raw = item.partition("=")
        asset, dot, param = target.strip().partition(".")
        if not eq or not dot or not asset or not param:
            raise UsageError(f"--set {item!r} must look like asset.param=value, e.g. --set train.num_trees=800")
        value: Any
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        out.setdefault(asset, {})[param] = value
    return out
