"""The OpenLineage event builder: event sequences per attempt, facets, and validity against the spec's models.

The events are validated by rebuilding each one from the ``openlineage-python`` model classes (generated
from the published OpenLineage JSON schema) and serializing it back: the result must equal the event, so a
missing required field, a misspelt key or a wrong facet schema URL fails.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

import attr
import pytest
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.generated import (
    dataset_version_dataset,
    error_message_run,
    job_type_job,
    output_statistics_output_dataset,
    parent_run,
    processing_engine_run,
    schema_dataset,
)
from openlineage.client.generated.base import RunFacet
from openlineage.client.serde import Serde

from cairn.core.records import AttemptRecord, InputRef, Materialization
from cairn.errors import UsageError
from cairn.lineage.openlineage import (
    SCHEMA_URLS,
    DatasetInfo,
    StepInfo,
    namespace_for,
    post_events,
    run_uuid,
    step_events,
)


@attr.define
class CairnStepRunFacet(RunFacet):
    """cairn's own run facet, declared the way OpenLineage clients declare custom facets."""

    runId: str
    partition: str
    attempt: int
    cacheKey: str
    codeVersion: str
    seed: int
    params: dict[str, Any]
    _additional_skip_redact: ClassVar[list[str]] = []

    @staticmethod
    def _get_schema() -> str:
        return SCHEMA_URLS["cairn_step"]


FACET_CLASSES: dict[str, Any] = {
    "datasetVersion": dataset_version_dataset.DatasetVersionDatasetFacet,
    "schema": schema_dataset.SchemaDatasetFacet,
    "outputStatistics": output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet,
    "jobType": job_type_job.JobTypeJobFacet,
    "parent": parent_run.ParentRunFacet,
    "processing_engine": processing_engine_run.ProcessingEngineRunFacet,
    "errorMessage": error_message_run.ErrorMessageRunFacet,
    "cairn_step": CairnStepRunFacet,
}


def _schema_fields(fields: list[dict[str, Any]]) -> list[Any]:
    return [
        schema_dataset.SchemaDatasetFacetFields(**{**f, "fields": _schema_fields(f.get("fields", []))}) for f in fields
    ]


def _facet(key: str, data: dict[str, Any]) -> Any:
    cls = FACET_CLASSES[key]
    values = dict(data)
    producer = values.pop("_producer")
    assert values.pop("_schemaURL") == cls._get_schema(), f"facet {key} names the wrong schema"
    if key == "schema":
        values["fields"] = _schema_fields(values["fields"])
    if key == "parent":
        values["run"] = parent_run.Run(**values["run"])
        values["job"] = parent_run.Job(**values["job"])
    return cls(producer=producer, **values)


def _facets(data: dict[str, Any]) -> dict[str, Any]:
    return {key: _facet(key, value) for key, value in data.items()}


def validate_event(event: dict[str, Any]) -> None:
    """Rebuild `event` from the OpenLineage model classes (their validators run) and compare it back."""
    run, job = event["run"], event["job"]
    model = RunEvent(
        eventType=RunState(event["eventType"]),
        eventTime=event["eventTime"],
        producer=event["producer"],
        run=Run(runId=run["runId"], facets=_facets(run["facets"])),
        job=Job(namespace=job["namespace"], name=job["name"], facets=_facets(job["facets"])),
        inputs=[
            InputDataset(
                namespace=d["namespace"],
                name=d["name"],
                facets=_facets(d["facets"]),
                inputFacets=_facets(d["inputFacets"]),
            )
            for d in event["inputs"]
        ],
        outputs=[
            OutputDataset(
                namespace=d["namespace"],
                name=d["name"],
                facets=_facets(d["facets"]),
                outputFacets=_facets(d["outputFacets"]),
            )
            for d in event["outputs"]
        ],
    )
    assert Serde.to_dict(model) == event


NS = namespace_for("shop")


def _mat(**changes: Any) -> Materialization:
    fields: dict[str, Any] = {
        "asset": "features",
        "partition": "2026-06-02",
        "cache_key": "b3:key",
        "data_version": "b3:out",
        "size": 2048,
        "format": "parquet",
        "pytype": "pyarrow.Table",
        "run_id": "20261123-081502-4f2a9c",
        "attempt": 2,
        "code_version": "b3:code",
        "params": {"window_days": 7},
        "seed": 11,
        "inputs": (InputRef("events", "2026-06-02", "b3:in"),),
        "duration_s": 1.5,
        "created_at": 1_800_000_010.0,
    }
    fields.update(changes)
    return Materialization(**fields)


def _attempt(n: int, status: str, start: float, end: float | None, error: str | None = None) -> AttemptRecord:
    return AttemptRecord("20261123-081502-4f2a9c", "features", "2026-06-02", n, status, start, end, error=error)


def _step(mat: Materialization, *attempts: AttemptRecord) -> StepInfo:
    inputs = (DatasetInfo("events@2026-06-02", "b3:in"),)
    output = DatasetInfo("features@2026-06-02", "b3:out", 2048, 3, (("user_id", "int64"), ("price", "double")))
    return StepInfo(mat.run_id, mat, attempts, inputs, output)


def test_a_retried_step_gives_start_and_fail_then_start_and_complete() -> None:
    step = _step(
        _mat(),
        _attempt(1, "failed", 1_800_000_000.0, 1_800_000_001.0, "ValueError: bad row\n  File 'x.py', line 3"),
        _attempt(2, "succeeded", 1_800_000_005.0, 1_800_000_010.0),
    )
    events = step_events(NS, step)
    assert [e["eventType"] for e in events] == ["START", "FAIL", "START", "COMPLETE"]
    first, second = events[0]["run"]["runId"], events[2]["run"]["runId"]
    assert first == events[1]["run"]["runId"] and second == events[3]["run"]["runId"] and first != second
    assert second == run_uuid("20261123-081502-4f2a9c", "features@2026-06-02", 2)
    assert uuid.UUID(second).version == 5
    assert events[0]["eventTime"] == "2027-01-15T08:00:00.000000+00:00"
    error = events[1]["run"]["facets"]["errorMessage"]
    assert error["message"] == "ValueError: bad row" and "line 3" in error["stackTrace"]
    assert "errorMessage" not in events[3]["run"]["facets"]
    assert [e["outputs"] for e in events[:3]] == [[], [], []]
    [output] = events[3]["outputs"]
    assert output["namespace"] == "cairn://shop" and output["name"] == "features@2026-06-02"
    assert output["facets"]["datasetVersion"]["datasetVersion"] == "b3:out"
    assert [f["name"] for f in output["facets"]["schema"]["fields"]] == ["user_id", "price"]
    assert output["outputFacets"]["outputStatistics"]["rowCount"] == 3
    assert output["outputFacets"]["outputStatistics"]["size"] == 2048
    assert all(e["inputs"][0]["facets"]["datasetVersion"]["datasetVersion"] == "b3:in" for e in events)
    parent = events[3]["run"]["facets"]["parent"]
    assert parent["run"]["runId"] == run_uuid("20261123-081502-4f2a9c") and parent["job"]["name"] == "run"
    step_facet = events[3]["run"]["facets"]["cairn_step"]
    assert step_facet["cacheKey"] == "b3:key" and step_facet["params"] == {"window_days": 7}
    assert events[3]["job"] == {
        "namespace": "cairn://shop",
        "name": "features",
        "facets": {
            "jobType": {
                "_producer": events[3]["producer"],
                "_schemaURL": SCHEMA_URLS["jobType"],
                "processingType": "BATCH",
                "integration": "CAIRN",
                "jobType": "ASSET",
            }
        },
    }
    for event in events:
        validate_event(event)


def test_abandoned_and_running_attempts() -> None:
    step = _step(
        _mat(attempt=3),
        _attempt(1, "abandoned", 1_800_000_000.0, 1_800_000_002.0, "the run's engine stopped heartbeating"),
        _attempt(2, "succeeded", 1_800_000_003.0, 1_800_000_004.0),  # committed by nobody: lease lost
        _attempt(3, "running", 1_800_000_005.0, None),
    )
    events = step_events(NS, step)
    assert [e["eventType"] for e in events] == ["START", "ABORT", "START", "ABORT", "START"]
    assert events[1]["run"]["facets"]["errorMessage"]["message"] == "the run's engine stopped heartbeating"
    assert all(e["outputs"] == [] for e in events)
    for event in events:
        validate_event(event)


def test_a_step_without_recorded_attempts_is_one_start_and_complete() -> None:
    mat = _mat(format="source", pytype=".csv", inputs=(), attempt=1)
    step = StepInfo(mat.run_id, mat, (), (), DatasetInfo("features@2026-06-02", "b3:out", 10))
    events = step_events(NS, step)
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    assert events[0]["eventTime"] == "2027-01-15T08:00:08.500000+00:00"
    assert events[1]["job"]["facets"]["jobType"]["jobType"] == "SOURCE"
    assert events[1]["outputs"][0]["outputFacets"] == {
        "outputStatistics": {
            "_producer": events[1]["producer"],
            "_schemaURL": SCHEMA_URLS["outputStatistics"],
            "size": 10,
        }
    }
    assert "schema" not in events[1]["outputs"][0]["facets"]
    for event in events:
        validate_event(event)


def test_the_validator_rejects_what_the_spec_does_not_allow() -> None:
    [start, _] = step_events(NS, _step(_mat(attempt=1), _attempt(1, "succeeded", 1.0, 2.0)))
    for broken in (
        {**start, "run": {**start["run"], "runId": "20261123-081502-4f2a9c"}},  # not a UUID
        {**start, "eventTime": "2026-06-01"},  # no time of day
        {**start, "extra": 1},
    ):
        with pytest.raises((ValueError, AssertionError)):
            validate_event(broken)


def test_only_http_endpoints_are_accepted() -> None:
    with pytest.raises(UsageError, match="must be an http:// or https:// URL"):
        post_events([], "file:///etc/passwd")
