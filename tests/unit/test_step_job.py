"""The step job's outcome names the class of the error an attempt failed with, beside its message."""

from __future__ import annotations

import dataclasses
import pickle
import time
import uuid
from typing import Any

import pyarrow as pa
import pytest

from cairn.core.asset import AssetDef, asset
from cairn.core.contracts import Contract, check, col
from cairn.core.graph import build_graph
from cairn.core.records import InputRef
from cairn.engine.jobs import BAD_INPUT, FAILED, OK, TIMEOUT, InputSpec, StepJob, StepOutcome
from cairn.engine.step import register_graph, run_step
from cairn.errors import (
    CairnError,
    CheckFailed,
    ContractViolation,
    CorruptObject,
    Fatal,
    MissingObject,
    SerializationError,
    StepFailed,
    StepTimeout,
)
from cairn.io import dump
from cairn.storage.memory import MemoryArtifactStore


def run(
    defs: list[AssetDef], name: str, inputs: tuple[InputSpec, ...] = (), timeout: float | None = None
) -> StepOutcome:
    """Run one attempt of asset `name` against the in-memory artifact store; the project folder is never
    written to, since these steps use neither their workdir nor a checkpoint."""
    project_dir = f"/nonexistent/cairn-unit-{uuid.uuid4().hex}"
    register_graph(project_dir, build_graph(defs))
    job = StepJob(project_dir, "memory://", name, "", "run-1", 1, "b3:key", {}, 0, inputs=inputs, timeout=timeout)
    return run_step(job)


def stored_input(value: Any) -> InputSpec:
    """An input `base` whose object is in the process-wide in-memory store."""
    stored = dump(value, MemoryArtifactStore.shared())
    return InputSpec("base", InputRef("base", "", stored.data_version), stored)


def base() -> dict[str, str]:
    return {"id": uuid.uuid4().hex}


def reads(base: dict[str, str]) -> dict[str, str]:
    return base


def test_a_successful_attempt_has_no_error_class() -> None:
    outcome = run([asset(base)], "base")
    assert outcome.status == OK
    assert outcome.error is None and outcome.error_class is None


def test_an_exception_from_user_code_is_step_failed() -> None:
    def broken() -> int:
        raise ValueError("no rows for this day")

    outcome = run([asset(broken)], "broken")
    assert outcome.status == FAILED and outcome.retryable
    assert outcome.error_class is StepFailed
    assert outcome.error is not None and outcome.error.startswith("ValueError: no rows for this day")


def test_fatal_raised_by_user_code_keeps_its_class_and_is_not_retried() -> None:
    def hopeless() -> int:
        raise Fatal("the upstream API was retired")

    outcome = run([asset(hopeless)], "hopeless")
    assert outcome.status == FAILED and not outcome.retryable
    assert outcome.error_class is Fatal
    assert outcome.error is not None and outcome.error.startswith("Fatal: the upstream API was retired")


def test_a_broken_blocking_contract_is_a_contract_violation() -> None:
    def prices() -> pa.Table:
        return pa.table({"price": pa.array([1.0, -2.0])})

    defs = [asset(contract=Contract(columns={"price": col("float64", min=0)}))(prices)]
    outcome = run(defs, "prices")
    assert outcome.status == FAILED and not outcome.retryable and outcome.stored is None
    assert outcome.error_class is ContractViolation
    assert outcome.error is not None and outcome.error.startswith(
        "ContractViolation: asset 'prices' broke its contract"
    )


def test_a_failed_blocking_check_is_check_failed() -> None:
    def has_two_ids(value: dict[str, str]) -> bool:
        return len(value) == 2

    checked = dataclasses.replace(asset(base), checks=(check("base", blocking=True)(has_two_ids),))
    outcome = run([checked], "base")
    assert outcome.status == FAILED and not outcome.retryable and outcome.stored is None
    assert outcome.error_class is CheckFailed
    assert outcome.error is not None and outcome.error.startswith("CheckFailed: asset 'base' failed a blocking check")


def test_a_failed_non_blocking_check_only_warns() -> None:
    def has_two_ids(value: dict[str, str]) -> bool:
        return len(value) == 2

    checked = dataclasses.replace(asset(base), checks=(check("base", blocking=False)(has_two_ids),))
    outcome = run([checked], "base")
    assert outcome.status == OK and outcome.error_class is None


def test_a_value_that_cannot_be_stored_is_a_serialization_error() -> None:
    def opaque() -> object:
        return object()

    outcome = run([asset(opaque)], "opaque")
    assert outcome.status == FAILED
    assert outcome.error_class is SerializationError


def test_a_missing_input_object_is_missing_object() -> None:
    spec = stored_input(base())
    gone = dataclasses.replace(spec, stored=dataclasses.replace(spec.stored, data_version="b3:" + "0" * 64))
    outcome = run([asset(base), asset(reads)], "reads", (gone,))
    assert outcome.status == BAD_INPUT
    assert outcome.error_class is MissingObject
    assert outcome.bad_input is not None and outcome.bad_input[0] == gone.stored.data_version


def test_a_damaged_input_object_is_corrupt_object() -> None:
    spec = stored_input(base())
    MemoryArtifactStore.shared().objects[spec.stored.data_version] = b"x" * spec.stored.size
    outcome = run([asset(base), asset(reads)], "reads", (spec,))
    assert outcome.status == BAD_INPUT
    assert outcome.error_class is CorruptObject


def test_an_input_that_reads_back_runs_the_step() -> None:
    value = base()
    outcome = run([asset(base), asset(reads)], "reads", (stored_input(value),))
    assert outcome.status == OK and outcome.error_class is None


def test_an_attempt_over_its_timeout_is_step_timeout() -> None:
    def slow() -> int:
        time.sleep(5)
        return 1

    outcome = run([asset(slow)], "slow", timeout=0.05)
    assert outcome.status == TIMEOUT
    assert outcome.error_class is StepTimeout


@pytest.mark.parametrize("error_class", [StepFailed, Fatal, ContractViolation, CheckFailed, CorruptObject])
def test_the_error_class_survives_pickling_as_the_same_class(error_class: type[CairnError]) -> None:
    outcome = StepOutcome(FAILED, error=f"{error_class.__name__}: x", error_class=error_class)
    assert pickle.loads(pickle.dumps(outcome)).error_class is error_class
