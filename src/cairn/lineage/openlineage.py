"""OpenLineage export: run events (START, then COMPLETE, FAIL or ABORT) for the steps behind a lineage tree.

Mapping (OpenLineage spec 2-0-2, standard facets only, plus one ``cairn_step`` run facet)::

    namespace      cairn://<project name>          (jobs and datasets)
    job            the asset name                  facets: jobType (BATCH, CAIRN, ASSET)
    run            one per attempt of a step       runId: UUID5 of (cairn run id, step, attempt), stable
                                                   facets: parent (the cairn run), processing_engine,
                                                   errorMessage (FAIL), cairn_step (cache key, code version...)
    dataset        asset or asset@partition        facets: datasetVersion (the data version), schema and
                                                   outputStatistics (Parquet objects in a local store only)

The builder is pure (`step_events`); `lineage_events` gathers what it needs from the stores. Events are
plain dicts: nothing here imports the ``openlineage-python`` package.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cairn.core.keys import step_label
from cairn.core.records import AttemptRecord, Materialization
from cairn.errors import CairnError, UsageError
from cairn.lineage.graph import LineageNode, is_source
from cairn.storage.base import ArtifactStore
from cairn.storage.metadata import MetadataStore
from cairn.version import __version__

SPEC = "https://openlineage.io/spec/2-0-2/OpenLineage.json"
PRODUCER = f"urn:cairn:{__version__}"
PARENT_JOB = "run"
_RUN_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:cairn:openlineage")
_FACETS = "https://openlineage.io/spec/facets"
SCHEMA_URLS = {
    "datasetVersion": f"{_FACETS}/1-0-1/DatasetVersionDatasetFacet.json#/$defs/DatasetVersionDatasetFacet",
    "schema": f"{_FACETS}/1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet",
    "outputStatistics": (
        f"{_FACETS}/1-0-2/OutputStatisticsOutputDatasetFacet.json#/$defs/OutputStatisticsOutputDatasetFacet"
    ),
    "jobType": f"{_FACETS}/2-0-4/JobTypeJobFacet.json#/$defs/JobTypeJobFacet",
    "parent": f"{_FACETS}/1-2-0/ParentRunFacet.json#/$defs/ParentRunFacet",
    "processing_engine": f"{_FACETS}/1-1-1/ProcessingEngineRunFacet.json#/$defs/ProcessingEngineRunFacet",
    "errorMessage": f"{_FACETS}/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet",
    "cairn_step": "urn:cairn:facets:CairnStepRunFacet:1",
}
_TERMINAL = {"succeeded": "COMPLETE", "failed": "FAIL"}  # any other finished status: ABORT


@dataclass(frozen=True, slots=True)
class DatasetInfo:
    """A dataset version as an event names it: asset[@partition], data version, and what is cheap to add."""

    name: str
    data_version: str
    size: int | None = None
    rows: int | None = None
    schema: tuple[tuple[str, str], ...] | None = None


@dataclass(frozen=True, slots=True)
class StepInfo:
    """One step of one run whose events are exported: its attempts, inputs and committed output."""

    run_id: str
    mat: Materialization
    attempts: tuple[AttemptRecord, ...]
    inputs: tuple[DatasetInfo, ...]
    output: DatasetInfo


def namespace_for(project_name: str) -> str:
    """The namespace of a project's jobs and datasets."""
    return f"cairn://{project_name}"


def run_uuid(*parts: object) -> str:
    """A stable OpenLineage runId (a UUID) for a cairn run, step or attempt."""
    return str(uuid.uuid5(_RUN_NAMESPACE, "/".join(str(p) for p in parts)))


def _time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat(timespec="microseconds")


def _facet(facet: str, /, **values: Any) -> dict[str, Any]:
    return {"_producer": PRODUCER, "_schemaURL": SCHEMA_URLS[facet], **values}


def _dataset(namespace: str, info: DatasetInfo, output: bool) -> dict[str, Any]:
    facets: dict[str, Any] = {"datasetVersion": _facet("datasetVersion", datasetVersion=info.data_version)}
    if info.schema is not None:
        fields = [{"name": name, "type": kind, "fields": []} for name, kind in info.schema]
        facets["schema"] = _facet("schema", fields=fields)
    out: dict[str, Any] = {"namespace": namespace, "name": info.name, "facets": facets}
    if output:
        stats = {k: v for k, v in (("rowCount", info.rows), ("size", info.size)) if v is not None}
        out["outputFacets"] = {"outputStatistics": _facet("outputStatistics", **stats)} if stats else {}
    else:
        out["inputFacets"] = {}
    return out


def step_events(namespace: str, step: StepInfo) -> list[dict[str, Any]]:
    """The OpenLineage run events of one step: per attempt a START and, once it finished, its outcome.

    The attempt that committed the materialization ends with COMPLETE and names the output dataset; a
    failed attempt ends with FAIL and its error; an abandoned or lost one with ABORT. A step recorded
    without attempts (older records) gets one START and COMPLETE around its materialization's time.
    """
    mat = step.mat
    attempts = step.attempts or (
        AttemptRecord(
            step.run_id,
            mat.asset,
            mat.partition,
            mat.attempt,
            "succeeded",
            mat.created_at - mat.duration_s,
            mat.created_at,
        ),
    )
    job = {
        "namespace": namespace,
        "name": mat.asset,
        "facets": {
            "jobType": _facet(
                "jobType", processingType="BATCH", integration="CAIRN", jobType="SOURCE" if is_source(mat) else "ASSET"
            )
        },
    }
    inputs = [_dataset(namespace, info, output=False) for info in step.inputs]
    events = []
    for attempt in attempts:
        run = {"runId": run_uuid(step.run_id, step_label(mat.asset, mat.partition), attempt.attempt)}
        facets: dict[str, Any] = {
            "parent": _facet(
                "parent",
                run={"runId": run_uuid(step.run_id), "facets": {}},
                job={"namespace": namespace, "name": PARENT_JOB, "facets": {}},
            ),
            "processing_engine": _facet(
                "processing_engine", version=__version__, name="cairn", openlineageAdapterVersion=__version__
            ),
            "cairn_step": _facet(
                "cairn_step",
                runId=step.run_id,
                partition=mat.partition,
                attempt=attempt.attempt,
                cacheKey=mat.cache_key,
                codeVersion=mat.code_version,
                seed=mat.seed,
                params=mat.params,
            ),
        }
        events.append(_event("START", attempt.started_at, {**run, "facets": facets}, job, inputs, []))
        if attempt.finished_at is None or attempt.status == "running":
            continue
        kind = _TERMINAL.get(attempt.status, "ABORT")
        outputs: list[dict[str, Any]] = []
        end_facets = dict(facets)
        if kind == "COMPLETE" and attempt.attempt == mat.attempt:
            outputs = [_dataset(namespace, step.output, output=True)]
        elif kind == "COMPLETE":
            kind = "ABORT"  # succeeded but not committed: its result was not published
        if kind != "COMPLETE":
            message = (attempt.error or attempt.status).strip()
            end_facets["errorMessage"] = _facet(
                "errorMessage",
                message=message.splitlines()[0] if message else attempt.status,
                programmingLanguage="PYTHON",
                stackTrace=message,
            )
        events.append(_event(kind, attempt.finished_at, {**run, "facets": end_facets}, job, inputs, outputs))
    return events


def _event(
    kind: str,
    when: float,
    run: dict[str, Any],
    job: dict[str, Any],
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "eventType": kind,
        "eventTime": _time(when),
        "producer": PRODUCER,
        "schemaURL": f"{SPEC}#/$defs/RunEvent",
        "run": run,
        "job": job,
        "inputs": inputs,
        "outputs": outputs,
    }


def lineage_events(
    meta: MetadataStore, artifacts: ArtifactStore, root: LineageNode, namespace: str
) -> list[dict[str, Any]]:
    """The events of every recorded step in a lineage tree, ordered by time."""
    infos: dict[int, DatasetInfo] = {}

    def info(mat: Materialization) -> DatasetInfo:
        if mat.id not in infos:
            infos[mat.id] = dataset_info(mat, artifacts)
        return infos[mat.id]

    attempts: dict[str, list[AttemptRecord]] = {}
    events: list[dict[str, Any]] = []
    for node in root.walk():
        mat = node.mat
        if mat is None or node.repeated:
            continue
        if mat.run_id not in attempts:
            attempts[mat.run_id] = meta.attempts(mat.run_id)
        own = tuple(a for a in attempts[mat.run_id] if (a.asset, a.partition) == (mat.asset, mat.partition))
        inputs = tuple(
            info(child.mat) if child.mat is not None else DatasetInfo(child.label, child.data_version)
            for child in node.inputs
        )
        events += step_events(namespace, StepInfo(mat.run_id, mat, own, inputs, info(mat)))
    # Stable: events at the same millisecond keep the order of their step (START, its end, the next START).
    return sorted(events, key=lambda e: e["eventTime"])


def dataset_info(mat: Materialization, artifacts: ArtifactStore) -> DatasetInfo:
    """A materialization as a dataset; a Parquet object in a local store adds its schema and row count
    (read from the file's footer)."""
    parquet = mat.format == "parquet" or (mat.format == "source" and mat.pytype == ".parquet")
    path = artifacts.local_path(mat.data_version) if parquet else None
    if path is None:
        return DatasetInfo(step_label(mat.asset, mat.partition), mat.data_version, mat.size)
    import pyarrow.parquet as pq  # here: only an export of Parquet lineage needs it

    try:
        meta = pq.read_metadata(path)
        schema = meta.schema.to_arrow_schema()
    except (OSError, ValueError):
        return DatasetInfo(step_label(mat.asset, mat.partition), mat.data_version, mat.size)
    fields = tuple((f.name, str(f.type)) for f in schema)
    return DatasetInfo(step_label(mat.asset, mat.partition), mat.data_version, mat.size, meta.num_rows, fields)


def write_events(events: Iterable[dict[str, Any]], path: str | os.PathLike[str]) -> int:
    """Write events as JSON lines (one event per line); returns how many were written."""
    count = 0
    with open(path, "w", encoding="utf-8") as out:
        for event in events:
            out.write(json.dumps(event, sort_keys=True, separators=(",", ":")) + "\n")
            count += 1
    return count


def post_events(events: Sequence[dict[str, Any]], url: str, timeout_s: float = 10.0) -> int:
    """POST each event as JSON to an OpenLineage HTTP endpoint (e.g. Marquez ``/api/v1/lineage``).

    Returns:
        How many events were sent.

    Raises:
        UsageError: The URL is not http(s).
        CairnError: The endpoint cannot be reached or answered with an error; the events before it were sent.
    """
    import urllib.error
    import urllib.request

    if not url.startswith(("http://", "https://")):
        raise UsageError(
            f"--openlineage-url {url!r} must be an http:// or https:// URL, e.g. http://localhost:5000/api/v1/lineage"
        )
    for sent, event in enumerate(events):
        request = urllib.request.Request(
            url,
            data=json.dumps(event, sort_keys=True).encode("utf-8"),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            exc.close()
            raise CairnError(
                f"the OpenLineage endpoint {url} refused event {sent + 1} of {len(events)} with HTTP {exc.code} "
                f"{exc.reason}; {sent} were sent. Check that the URL is the lineage endpoint of the server."
            ) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise CairnError(
                f"cannot send OpenLineage events to {url}: {getattr(exc, 'reason', exc)}; {sent} of {len(events)} "
                "were sent. Check that the server is running and the URL is right."
            ) from exc
    return len(events)
