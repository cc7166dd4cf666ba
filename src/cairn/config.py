"""`cairn.toml` → frozen `Settings`; every malformed entry is a `ConfigError` that names the fix."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cairn.core.keys import validate_name
from cairn.core.retry import BreakerPolicy, Retry
from cairn.errors import ConfigError, DefinitionError, UsageError, did_you_mean

if TYPE_CHECKING:  # imported when cairn.toml has [[schedules]]
    from cairn.core.automation import Schedule

CONFIG_FILE = "cairn.toml"
EXECUTOR_KINDS = ("inline", "thread", "process", "dask", "ray")

_MODULE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")  # \Z: no trailing newline
_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false"}
_SECTIONS = (
    "project",
    "storage",
    "executor",
    "defaults",
    "params",
    "profiles",
    "pools",
    "circuit_breakers",
    "engine",
    "slo",
    "owners",
    "alerts",
    "costs",
    "schedules",
)
_KEYS: dict[str, tuple[str, ...]] = {
    "project": ("name", "modules", "seed"),
    "storage": ("artifacts", "artifacts_options", "database"),
    "executor": ("kind", "workers", "address", "start"),
    "defaults": ("retry", "timeout"),
    "engine": ("heartbeat_s", "lease_ttl_s", "stale_after_s", "strict_code"),
    "alerts": ("webhook", "timeout_s", "attempts", "backoff_s", "send_resolved"),
    "costs": ("cpu_hour", "currency"),
}
# Observability (docs/observability.md): what an [[slo]] rule may measure, and how it sums up a window of runs.
SLO_METRICS = ("schedule_to_start_s", "duration_s", "success_ratio", "cpu_s", "cost", "cache_saved_s")
SLO_STATS = ("max", "mean", "p50", "p90", "p95", "p99", "last", "sum")
_SLO_KEYS = ("name", "metric", "min", "max", "window", "stat", "asset", "owners")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(w|d|h|m|s)?\s*$")
_DURATION_UNITS = {"w": 604800.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, None: 1.0}


@dataclass(frozen=True, slots=True)
class SloRule:
    """One ``[[slo]]`` rule: a metric over a window of runs (of one asset, if given) must stay within bounds."""

    name: str
    metric: str
    min: float | None = None
    max: float | None = None
    window_s: float = 86400.0
    stat: str = "max"
    asset: str | None = None
    owners: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AlertSettings:
    """``[alerts]``: where alerts of unowned incidents go (a webhook, else the log) and how webhooks are tried."""

    webhook: str | None = None
    timeout_s: float = 2.0
    attempts: int = 5
    backoff_s: float = 1.0
    send_resolved: bool = True


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
    slos: tuple[SloRule, ...] = ()
    owners: Mapping[str, str | None] = field(default_factory=dict)  # owner -> webhook URL (None: the log)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    cpu_hour: float = 0.0  # [costs]: the price of one CPU-hour
    currency: str = ""
    schedules: tuple[Schedule, ...] = ()  # [[schedules]]; those defined in Python are on the Project

    @property
    def state_dir(self) -> Path:
        """Where cairn keeps local state next to the project (stat cache, checkpoints, scratch)."""
        return self.root / ".cairn"

    def worker_count(self) -> int:
        return self.workers if self.workers > 0 else (os.cpu_count() or 1)


def find_config(start: str | os.PathLike[str] = ".") -> Path:
    """The project folder: `start` itself, which must hold a `cairn.toml`."""
    try:
        root = Path(start).resolve()
        found = (root / CONFIG_FILE).is_file()
    except (OSError, ValueError) as exc:  # a NUL byte, a name too long for the file system
        raise ConfigError(f"the project folder {str(start)!r} cannot be opened: {exc}; pass -C/--project DIR") from exc
    if not found:
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
    alerts = _table(data, "alerts")
    costs = _table(data, "costs")
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
        artifacts=_location(storage.get("artifacts", ".cairn/artifacts"), "[storage] artifacts"),
        artifacts_options=_storage_options(storage.get("artifacts_options", {})),
        database=_location(storage.get("database", "sqlite:///.cairn/cairn.db"), "[storage] database"),
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
        slos=_slos(data.get("slo", [])),
        owners=_owners(data.get("owners", {})),
        alerts=AlertSettings(
            webhook=_webhook(alerts.get("webhook"), "[alerts] webhook"),
            timeout_s=_positive(alerts.get("timeout_s", 2.0), "[alerts] timeout_s"),
            attempts=int(_positive(_typed(alerts.get("attempts", 5), int, "[alerts] attempts"), "[alerts] attempts")),
            backoff_s=_positive(alerts.get("backoff_s", 1.0), "[alerts] backoff_s"),
            send_resolved=_typed(alerts.get("send_resolved", True), bool, "[alerts] send_resolved"),
        ),
        cpu_hour=_non_negative_number(costs.get("cpu_hour", 0.0), "[costs] cpu_hour"),
        currency=_typed(costs.get("currency", ""), str, "[costs] currency"),
        schedules=_schedules(data.get("schedules", [])),
    )


_SCHEDULE_KEYS = ("name", "cron", "select", "tz", "partition", "catchup", "profile")
_SCHEDULE_EXAMPLE = '[[schedules]]\nname = "nightly"\ncron = "0 2 * * *"\nselect = "+model"\ntz = "Europe/Berlin"'


def _schedules(value: Any) -> tuple[Schedule, ...]:
    """``[[schedules]]``: each table is a `cairn.schedule(...)`; a malformed one names the fix."""
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError(f"{CONFIG_FILE}: schedules are an array of tables, one per schedule:\n{_SCHEDULE_EXAMPLE}")
    if not value:
        return ()
    from cairn.core.automation import schedule

    out = []
    for n, table in enumerate(value, start=1):
        where = f"[[schedules]] #{n}" + (f" ({table['name']})" if isinstance(table.get("name"), str) else "")
        for key in table:
            if key not in _SCHEDULE_KEYS:
                raise ConfigError(
                    f"{CONFIG_FILE}: unknown key '{key}' in {where}.{did_you_mean(key, _SCHEDULE_KEYS)} "
                    f"Known keys: {', '.join(_SCHEDULE_KEYS)}"
                )
        for key in ("name", "cron"):
            if not isinstance(table.get(key), str):
                raise ConfigError(f'{CONFIG_FILE}: {where} needs {key} = "..." (a string), e.g.\n{_SCHEDULE_EXAMPLE}')
        try:
            out.append(
                schedule(
                    table["name"],
                    table["cron"],
                    select=table.get("select", ()),
                    tz=table.get("tz", "UTC"),
                    partition=table.get("partition"),
                    catchup=table.get("catchup", "latest"),
                    profile=table.get("profile"),
                )
            )
        except DefinitionError as exc:
            raise ConfigError(f"{CONFIG_FILE}: {where}: {exc}") from exc
    return tuple(out)


def _location(value: Any, where: str) -> str:
    """A path or URL setting: a control character (NUL, newline, ...) in it is a mistake, never a place."""
    text: str = _typed(value, str, where)
    bad = next((c for c in text if ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        raise ConfigError(
            f"{CONFIG_FILE}: {where} = {text!r} contains the control character {bad!r}: "
            "write the path or URL without it"
        )
    return text


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


def parse_duration(text: str | float) -> float:
    """Seconds from a duration like ``3d``, ``12h``, ``30m``, ``90s``, ``1w`` or a plain number of seconds.

    Raises:
        ValueError: Not such a duration, or not positive.
    """
    if isinstance(text, int | float) and not isinstance(text, bool):
        seconds = float(text)
    else:
        match = _DURATION_RE.match(str(text))
        if match is None:
            raise ValueError(f"{text!r} is not a duration like 3d, 12h, 30m, 90s or 1w")
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if seconds <= 0:
        raise ValueError(f"{text!r} is not a positive duration")
    return seconds


def _slos(value: Any) -> tuple[SloRule, ...]:
    """``[[slo]]`` tables: a metric, one or both of min and max, a window, a statistic, an asset, owners."""
    example = '[[slo]] metric = "schedule_to_start_s" max = 60'
    if not isinstance(value, list) or not all(isinstance(rule, dict) for rule in value):
        raise ConfigError(f"{CONFIG_FILE}: slo must be an array of tables, one per rule: {example}")
    rules: list[SloRule] = []
    for number, rule in enumerate(value, 1):
        where = f"[[slo]] rule {number}"
        for key in rule:
            if key not in _SLO_KEYS:
                raise ConfigError(
                    f"{CONFIG_FILE}: unknown key '{key}' in {where}.{did_you_mean(key, _SLO_KEYS)} "
                    f"Known keys: {', '.join(_SLO_KEYS)}"
                )
        metric = rule.get("metric")
        if metric not in SLO_METRICS:
            raise ConfigError(
                f"{CONFIG_FILE}: {where} needs metric = one of {', '.join(SLO_METRICS)}, got {metric!r}."
                f"{did_you_mean(str(metric), SLO_METRICS)}"
            )
        low, high = (_slo_bound(rule.get(k), f"{where} {k}") for k in ("min", "max"))
        if low is None and high is None:
            raise ConfigError(f"{CONFIG_FILE}: {where} ({metric}) needs min = ... or max = ..., e.g. {example}")
        if "stat" in rule and metric == "success_ratio":
            raise ConfigError(f"{CONFIG_FILE}: {where}: success_ratio is one ratio over its window; remove stat")
        stat = rule.get("stat", "max" if high is not None else "mean")
        if stat not in SLO_STATS:
            raise ConfigError(f"{CONFIG_FILE}: {where} stat = {stat!r} is not one of {', '.join(SLO_STATS)}")
        asset = rule.get("asset")
        if asset is not None:
            asset = _name(asset, "asset")
            if metric == "schedule_to_start_s":
                raise ConfigError(f"{CONFIG_FILE}: {where}: schedule_to_start_s is measured per run; remove asset")
        try:
            window = parse_duration(rule.get("window", "1d"))
        except ValueError as exc:
            raise ConfigError(f"{CONFIG_FILE}: {where} window: {exc}") from None
        owners = rule.get("owners", [])
        if not isinstance(owners, list):
            raise ConfigError(f'{CONFIG_FILE}: {where} owners must be a list of names, e.g. ["team-x"]')
        bounds = " and ".join(f"{op} {v:g}" for op, v in ((">=", low), ("<=", high)) if v is not None)
        name = rule.get("name", f"{metric}{'@' + asset if asset else ''} {bounds}")
        rules.append(
            SloRule(
                name=_typed(name, str, f"{where} name"),
                metric=metric,
                min=low,
                max=high,
                window_s=window,
                stat=stat,
                asset=asset,
                owners=tuple(_name(owner, "owner") for owner in owners),
            )
        )
    names = [rule.name for rule in rules]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"{CONFIG_FILE}: two [[slo]] rules are named {name!r}; give one a different name = ...")
    return tuple(rules)


def _slo_bound(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ConfigError(f"{CONFIG_FILE}: {where} must be a number, got {value!r}")
    return float(value)


def _owners(value: Any) -> dict[str, str | None]:
    """``[owners]``: owner name → route, ``team-x = { webhook = "http://..." }`` (no webhook: the log)."""
    example = 'team-x = { webhook = "https://hooks.example.com/cairn" }'
    if not isinstance(value, dict):
        raise ConfigError(f"{CONFIG_FILE}: [owners] must map owner names to routes, e.g. {example}")
    out: dict[str, str | None] = {}
    for owner, route in value.items():
        _name(owner, "owner")
        if not isinstance(route, dict) or set(route) - {"webhook"}:
            raise ConfigError(f"{CONFIG_FILE}: [owners] {owner} must be a table with a webhook, e.g. {example}")
        out[owner] = _webhook(route.get("webhook"), f"[owners] {owner}.webhook")
    return out


def _webhook(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not re.match(r"^https?://[^\s/]+", value):
        raise ConfigError(f"{CONFIG_FILE}: {where} must be an http:// or https:// URL, got {value!r}")
    return value


def _non_negative_number(value: Any, where: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"{CONFIG_FILE}: {where} must be a number >= 0, got {value!r}")
    return float(value)


def parse_overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    """Param overrides from ``asset.param=value`` strings (`cairn run --set`); a value is a TOML literal
    (``14``, ``true``, ``[1, 2]``, ``"x"``), else the plain string."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        target, eq, raw = item.partition("=")
        asset, dot, param = target.strip().partition(".")
        if not eq or not dot or not asset or not param:
            raise UsageError(f"--set {item!r} must look like asset.param=value, e.g. --set train.num_trees=800")
        try:
            doc = tomllib.loads(f"v = {raw.strip()}")
        except tomllib.TOMLDecodeError:
            doc = {}
        # Exactly one literal: "1\nx = 2" is a document of two keys, not the value 1.
        value: Any = doc["v"] if doc.keys() == {"v"} else raw.strip()
        out.setdefault(asset, {})[param] = value
    return out
