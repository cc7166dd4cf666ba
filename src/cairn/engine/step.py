"""The step job: runs in a worker, loads inputs, calls the asset function, stores and hashes the output.

It never writes metadata: it returns a `StepOutcome` and the engine decides what to record.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import io as stdio
import json
import shutil
import signal
import threading
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cairn.core.asset import AssetDef
from cairn.core.graph import Graph
from cairn.core.keys import step_label
from cairn.core.partitions import context_window
from cairn.core.records import StoredValue
from cairn.engine.context import Checkpoint, Context, checkpoint_path
from cairn.engine.jobs import BAD_INPUT, FAILED, OK, TIMEOUT, DriftBaseline, InputSpec, StepJob, StepOutcome
from cairn.errors import (
    CairnError,
    CheckFailed,
    ContractViolation,
    NonRetryable,
    StepFailed,
    StepTimeout,
    StoreError,
)
from cairn.executors.base import job_started
from cairn.executors.shipping import project_root
from cairn.io.reading import SOURCE_FORMAT, BadInput, load_inputs, load_stored
from cairn.storage.artifacts import deferred_publishing, discard

if TYPE_CHECKING:  # contracts and gates are imported by the steps of assets that have them
    from cairn.core.contracts import RuleResult

# The CPU seconds of the attempt, recorded with its materialization (what `cairn slo` and /metrics cost).
CPU_METADATA = "cairn.cpu_s"
_graphs: dict[str, Graph] = {}
_loaded: dict[str, tuple[str, Graph]] = {}  # project folder -> (run id, graph) loaded by this worker
_loading = threading.Lock()  # a worker with several threads imports the project's modules once at a time
_stores: dict[tuple[str, str, str], Any] = {}


def register_graph(project_dir: str, graph: Graph) -> None:
    """Let in-process executors reuse the engine's loaded graph instead of loading the project again."""
    _graphs[project_dir] = graph


def run_step(job: StepJob) -> StepOutcome:
    """Run one attempt of one step and store its output. Never raises for errors of user code.

    With `StepJob.defer_publish` the objects stay unpublished and come back in `StepOutcome.objects`; those of
    an attempt that failed are removed.
    """
    if not job.defer_publish:
        return _attempt(job)
    with deferred_publishing() as unpublished:
        outcome = _attempt(job)
    if outcome.status != OK:
        discard(unpublished.objects)
        return outcome
    return replace(outcome, objects=tuple(unpublished.objects))


def _attempt(job: StepJob) -> StepOutcome:
    started = time.perf_counter()
    cpu_clock = _cpu_clock()
    cpu_started = cpu_clock()
    ctx: Context | None = None
    out = stdio.StringIO()
    try:
        store = _store(job.artifacts_url, job.project_dir, job.artifacts_options)
        asset = _graph(job)[job.asset]
        if job.source_path is not None:
            stored = _copy_source(job, store)
            copied = time.perf_counter()
            checks: list[RuleResult] = []
            if asset.contract is not None:
                checks = _validate(asset, load_stored(stored, store), None, (), store)
            finished = time.perf_counter()
            timings = {"checks_s": finished - copied, "output_s": copied - started}
            usage = {CPU_METADATA: round(cpu_clock() - cpu_started, 6)}
            return _checked(StepOutcome(OK, stored, finished - started, metadata=usage, timings=timings), checks, job)
        ctx = _context(job, asset)
        kwargs = load_inputs(job.inputs, store)
        if asset.context_param:
            kwargs[asset.context_param] = ctx
        assert asset.fn is not None
        loaded = time.perf_counter()
        job_started()
        with _captured(out, job.capture_output), _alarm(job.timeout):
            value = asset.fn(**kwargs)
        called = time.perf_counter()
        arrow = _shared_arrow(asset, value)
        results = _validate(asset, value, ctx, job.drift, store, arrow)
        if _blocking_failures(results):
            outcome = StepOutcome(FAILED, None, time.perf_counter() - started, _logs(ctx, out), ctx.metrics)
            return _checked(outcome, results, job)
        checked = time.perf_counter()
        stored = _dump(value, store, asset, arrow)
        dumped = time.perf_counter()
        metadata = dict(ctx.metadata)
        if asset.gates:
            from cairn.core.gates import GATES_METADATA

            with _captured(out, job.capture_output):
                metadata[GATES_METADATA] = _run_gates(job, asset, value, kwargs, ctx, stored, store)
        finished = time.perf_counter()
        timings = {
            "inputs_s": loaded - started,
            "function_s": called - loaded,
            "checks_s": checked - called,
            "output_s": dumped - checked,
            **({"gates_s": finished - dumped} if asset.gates else {}),
        }
        metadata[CPU_METADATA] = round(cpu_clock() - cpu_started, 6)
        outcome = StepOutcome(OK, stored, finished - started, _logs(ctx, out), ctx.metrics, metadata, timings=timings)
        return _checked(outcome, results, job)
    except BadInput as bad:
        return StepOutcome(
            BAD_INPUT,
            None,
            time.perf_counter() - started,
            error=str(bad.error),
            error_class=type(bad.error),
            bad_input=(bad.version, bad.digest),
        )
    except (StepTimeout, _Deadline) as exc:
        return StepOutcome(
            TIMEOUT, None, time.perf_counter() - started, _logs(ctx, out), error=str(exc), error_class=StepTimeout
        )
    except Exception as exc:
        return StepOutcome(
            FAILED,
            None,
            time.perf_counter() - started,
            _logs(ctx, out),
            error=_describe(exc),
            error_class=_error_class(exc),
            retryable=not isinstance(exc, NonRetryable),
        )
    finally:
        if ctx is not None:
            shutil.rmtree(_workdir(job), ignore_errors=True)


def _shared_arrow(asset: AssetDef, value: Any) -> Any:
    """The output as the Arrow table its Parquet write will hold, when its contract needs Arrow too: converted
    once for both (the contract sees the frame's own columns, without a pandas index: `frame_columns`)."""
    if asset.contract is None or asset.io not in (None, "parquet"):
        return None
    from cairn.core.contracts import Contract

    if not isinstance(asset.contract, Contract):
        return None  # a pandera schema
    from cairn.io.parquet import parquet_table, table_kind

    kind = table_kind(value)
    return parquet_table(value, kind) if kind in ("polars", "pandas") else None


def _validate(
    asset: AssetDef,
    value: Any,
    ctx: Context | None,
    drift: tuple[DriftBaseline, ...],
    store: Any,
    arrow: Any = None,
) -> list[RuleResult]:
    """Evaluate the asset's contract (on `arrow` when given: the output's Arrow form) and checks on its
    output, before anything is published; a drift check reads the reference objects the engine resolved."""
    results: list[RuleResult] = []
    if asset.contract is not None:
        from cairn.io.parquet import frame_columns
        from cairn.quality.contracts import evaluate_any

        window = ctx.partition_window if ctx is not None else None
        results.extend(evaluate_any(asset.contract, value if arrow is None else frame_columns(arrow), window))
    if asset.checks:
        from cairn.quality.checks import run_check

        baselines = {b.check: b for b in drift}
        for check in asset.checks:
            results.append(run_check(check, value, ctx, _reference(baselines.get(check.name), store)))
    return results


def _reference(baseline: DriftBaseline | None, store: Any) -> Any:
    """A drift check's reference with its objects read (each checksum-verified); None for other checks."""
    if baseline is None:
        return None
    from cairn.quality.drift import Reference

    tables = tuple(load_stored(stored, store) for stored in baseline.stored)
    return Reference(baseline.label, tables, baseline.missing, baseline.error)


def _run_gates(
    job: StepJob, asset: AssetDef, value: Any, kwargs: dict[str, Any], ctx: Context, stored: StoredValue, store: Any
) -> list[dict[str, Any]]:
    """Evaluate the model's gates on the stored candidate: a failed or raising gate is recorded, never raised
    (training makes a candidate; a failed blocking gate only blocks its promotion)."""
    from cairn.core.gates import GateContext, gate_record, run_gate
    from cairn.io.files import Files

    champion = job.champion
    gate_ctx = GateContext(
        asset=job.asset,
        partition=job.partition,
        metrics=ctx.metrics,
        metadata=ctx.metadata,
        params=job.params,
        inputs={name: v for name, v in kwargs.items() if name != asset.context_param},
        champion=functools.partial(load_stored, champion.stored, store) if champion is not None else None,
        champion_metrics=champion.metrics if champion is not None else None,
        champion_version=champion.stored.data_version if champion is not None else None,
        size_bytes=_files_size(value.path) if isinstance(value, Files) else stored.size,
        clock=time.perf_counter,
    )
    candidate = Path(value.path) if isinstance(value, Files) else value  # as `cairn.load` gives it back
    records = []
    for definition in asset.gates:
        result = run_gate(definition, candidate, gate_ctx)
        records.append(gate_record(definition, result))
        if not result.passed:
            kind = "blocking gate" if definition.blocking else "gate"
            ctx.log.records.append((time.time(), "WARNING", f"{kind} '{definition.name}' failed: {result.detail}"))
    return records


def _files_size(path: Any) -> int:
    """The bytes of every file under a `cairn.Files` path (one file: its size): what the model weighs."""
    root = Path(path)
    if root.is_file():
        return root.stat().st_size
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


def _blocking_failures(results: list[RuleResult]) -> list[RuleResult]:
    return [r for r in results if not r.passed and r.blocking]


def _checked(outcome: StepOutcome, results: list[RuleResult], job: StepJob) -> StepOutcome:
    """Attach rule results; blocking failures turn the outcome into a non-retryable failure."""
    if not results:
        return outcome
    recorded = tuple(_as_dict(r) for r in results)
    warned = [r for r in results if not r.passed and not r.blocking]
    logs = outcome.logs + tuple((time.time(), "WARNING", f"check warning: {r.describe()}") for r in warned)
    failures = _blocking_failures(results)
    if not failures:
        return replace(outcome, checks=recorded, logs=logs)
    # A drift rule guards the data like a contract does; only `@check` functions fail with CheckFailed.
    check_names = {check.name for check in _graph(job)[job.asset].checks if check.drift is None}
    broken_contract = any(r.rule not in check_names for r in failures)
    error_class = ContractViolation if broken_contract else CheckFailed
    kind = error_class.__name__
    what = "broke its contract" if broken_contract else "failed a blocking check"
    where = step_label(job.asset, job.partition)
    lines = "\n".join(f"  - {r.describe()}" for r in failures)
    error = f"{kind}: asset '{where}' {what}; nothing was published:\n{lines}"
    return replace(
        outcome,
        status=FAILED,
        stored=None,
        checks=recorded,
        error=error,
        error_class=error_class,
        retryable=False,
        logs=logs,
    )


def _as_dict(result: RuleResult) -> dict[str, Any]:
    return {
        "rule": result.rule,
        "passed": result.passed,
        "blocking": result.blocking,
        "observed": _plain(result.observed),
        "expected": _plain(result.expected),
        "sample": [{k: _plain(v) for k, v in row.items()} for row in result.sample],
        "metrics": dict(result.metrics),
        **({"reference": result.reference} if result.reference else {}),
    }


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value)


def _graph(job: StepJob) -> Graph:
    """The engine's graph when it registered one in this process; else the project loaded once per run, so
    that a long-lived worker (a Dask or Ray cluster's) runs each run's code, not the code of its first run."""
    graph = _graphs.get(job.project_dir)
    if graph is not None:
        return graph
    root = project_root(job.project_dir)  # the project's folder, or the copy of its code shipped to this worker
    with _loading:
        loaded = _loaded.get(root)
        if loaded is None or loaded[0] != job.run_id:
            from cairn.project import load_project

            loaded = _loaded[root] = (job.run_id, load_project(root).graph)
    return loaded[1]


def _store(url: str, project_dir: str, options: dict[str, Any]) -> Any:
    key = (url, project_dir, json.dumps(options, sort_keys=True, default=str))
    if key not in _stores:
        from cairn.storage.factory import open_artifacts

        _stores[key] = open_artifacts(url, project_dir, options)
    return _stores[key]


def _workdir(job: StepJob) -> Path:
    name = step_label(job.asset, job.partition)
    return Path(project_root(job.project_dir)) / ".cairn" / "work" / f"{job.run_id}-{name}-{job.attempt}"


def _context(job: StepJob, asset: AssetDef) -> Context:
    checkpoint = checkpoint_path(project_root(job.project_dir), job.cache_key)  # kept where the code runs from
    return Context(
        asset=job.asset,
        partition=job.partition,
        params=job.params,
        seed=job.seed,
        run_id=job.run_id,
        attempt=job.attempt,
        workdir=_workdir(job),
        checkpoint=Checkpoint(checkpoint),
        partition_window=context_window(asset.partitions, job.partition),
        input_versions=_input_versions(job.inputs),
    )


def _input_versions(specs: tuple[InputSpec, ...]) -> dict[str, Any]:
    """Each parameter's data version; a windowed or all-partitions input gives one per partition key."""
    versions: dict[str, Any] = {}
    for spec in specs:
        if spec.key is None:
            versions[spec.param] = spec.ref.data_version
        else:
            versions.setdefault(spec.param, {})[spec.key] = spec.ref.data_version
    return versions


class _Deadline(BaseException):
    """Raised into the asset function at its timeout; a BaseException, so ``except Exception`` lets it pass."""


@contextlib.contextmanager
def _alarm(timeout: float | None) -> Any:
    """Interrupt the asset function with `StepTimeout` after `timeout` seconds (in a main thread only;
    elsewhere the executor stops waiting instead). Worker start-up and input loading do not count."""
    if timeout is None or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise _Deadline(f"the attempt ran longer than its timeout of {timeout} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def _captured(out: stdio.StringIO, enabled: bool) -> Any:
    if not enabled:
        yield
        return
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        yield


def _logs(ctx: Context | None, out: stdio.StringIO) -> tuple[tuple[float, str, str], ...]:
    records = list(ctx.log.records) if ctx is not None else []
    printed = out.getvalue()
    if printed:
        records.append((time.time(), "OUTPUT", printed.rstrip("\n")))
    return tuple(records)


def _cpu_clock() -> Any:
    """The clock of the CPU time an attempt uses: the process's (with its threads) when the attempt runs in a
    main thread, one attempt per process (the process executor, ray, inline); the thread's when attempts share
    a process (the thread executor, dask), where the process's would count the others' too."""
    return time.process_time if threading.current_thread() is threading.main_thread() else time.thread_time


def _error_class(exc: Exception) -> type[CairnError]:
    """The class an attempt failed with: a cairn error keeps its own (`Fatal`, `SerializationError`, ...);
    any other exception is `StepFailed`, the asset's code raising (or a library it or cairn called)."""
    return type(exc) if isinstance(exc, CairnError) else StepFailed


def _describe(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    user = [f for f in frames if "/cairn/" not in f.filename.replace("\\", "/")] or frames[-1:]
    where = "".join(traceback.format_list(user[-4:]))
    return f"{type(exc).__name__}: {exc}\n{where}".rstrip()


# What a disk says when it cannot take the output: full, over quota, failing, read-only, file too large.
_DISK_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EFBIG})


def _dump(value: Any, store: Any, asset: AssetDef, arrow: Any = None) -> StoredValue:
    """Serialize and store the output; a disk that refuses it is a `StoreError` (the store's, not user code's)."""
    try:
        if arrow is not None:
            from cairn.io.parquet import dump_arrow, table_kind

            return dump_arrow(arrow, table_kind(value) or "arrow", store)
        from cairn.io import dump

        return dump(value, store, asset.io)
    except OSError as exc:
        if exc.errno not in _DISK_ERRORS:
            raise
        raise StoreError(
            f"the output could not be written to the artifact store {getattr(store, 'url', store)}: {exc}; "
            "free space on its disk (or repair it), then resume the run"
        ) from None


def _copy_source(job: StepJob, store: Any) -> StoredValue:
    assert job.source_path is not None
    path = Path(job.source_path)
    writer = store.writer()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                writer.write(chunk)
        digest, size = writer.commit()
    except BaseException:
        writer.abort()
        raise
    return StoredValue(digest, size, SOURCE_FORMAT, path.suffix.lower() or ".bin")
