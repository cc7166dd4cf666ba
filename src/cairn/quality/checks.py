"""Running one `@check` (or a `Drift` check) on an output: calling it the way its signature asks, any outcome
turned into a `RuleResult`."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

from cairn.core.contracts import CheckDef, CheckResult, RuleResult
from cairn.quality.drift import evaluate_drift

_CONTEXT_NAMES = ("ctx", "context")
_NUMPY_BOOLS = ("bool", "bool_")  # numpy 2 and numpy 1 names of numpy's boolean scalar


def run_check(check: CheckDef, value: Any, ctx: Any | None, previous: Any | None = None) -> RuleResult:
    """Run a check on an output and report it as a `RuleResult` named after the check.

    The function gets the output, and the context too when a parameter is named ``ctx``/``context`` or
    annotated ``Context`` (in either order). It returns a bool or a `CheckResult` (its metrics are copied,
    its message becomes the observed value). An exception raised by the check is a failure whose observed
    value is the exception. A drift check compares the output with `previous` (see `evaluate_drift`).

    Args:
        check: the check definition.
        value: the output being checked.
        ctx: the step's context, or None outside a run.
        previous: for drift checks, the resolved `Reference` (or one reference table, or None).
    """
    if check.drift is not None:
        result = evaluate_drift(check.drift, value, previous)
        return dataclasses.replace(result, rule=check.name, blocking=check.blocking)
    assert check.fn is not None
    try:
        outcome = check.fn(*_arguments(check.fn, value, ctx))
    except Exception as exc:  # a check that crashes fails; the crash is its observation
        return RuleResult(check.name, False, check.blocking, f"{type(exc).__name__}: {exc}", "check passes")
    if isinstance(outcome, CheckResult):
        metrics = {str(k): float(v) for k, v in outcome.metrics.items()}
        observed = outcome.message or ("passed" if outcome.passed else "failed")
        return RuleResult(check.name, bool(outcome.passed), check.blocking, observed, "check passes", metrics=metrics)
    if isinstance(outcome, bool) or (type(outcome).__module__ == "numpy" and type(outcome).__name__ in _NUMPY_BOOLS):
        passed = bool(outcome)
        return RuleResult(check.name, passed, check.blocking, "passed" if passed else "failed", "check passes")
    return RuleResult(
        check.name,
        False,
        check.blocking,
        f"the check returned {type(outcome).__name__}; return a bool or a CheckResult",
        "check passes",
    )


def _arguments(fn: Any, value: Any, ctx: Any) -> tuple[Any, ...]:
    try:
        parameters = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):  # builtins without a signature: the value alone
        return (value,)
    if len(parameters) < 2:
        return (value,)
    first, second = parameters[:2]
    if _wants_context(first) and not _wants_context(second):
        return (ctx, value)
    return (value, ctx)


def _wants_context(parameter: inspect.Parameter) -> bool:
    annotation = parameter.annotation
    name = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    return parameter.name in _CONTEXT_NAMES or name.rsplit(".", 1)[-1] == "Context"
