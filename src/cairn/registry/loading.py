"""Loading what an alias or a model version names, after its checksum matched the record.

The bytes are read and verified by the artifact store (`read_bytes` checks size and BLAKE3) before anything
deserializes them, so a changed or damaged file is refused, never unpickled or parsed.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from cairn.core.keys import validate_name, validate_partition
from cairn.errors import CorruptObject, MissingObject, UsageError, did_you_mean
from cairn.registry.promotion import DEFAULT_ALIAS
from cairn.registry.versions import version as find_version
from cairn.registry.versions import version_at

if TYPE_CHECKING:
    from cairn.config import Settings
    from cairn.core.records import Materialization
    from cairn.project import Project
    from cairn.storage.base import ArtifactStore
    from cairn.storage.metadata import MetadataStore


def load_model(
    name: str,
    alias: str | None = None,
    version: int | None = None,
    project: str | os.PathLike[str] | Settings | Project = ".",
) -> Any:
    """The model that `alias` (default ``champion``) or `version` of model `name` names, checksum-verified.

    Raises:
        UsageError: Both or an unknown alias or version were given.
        CorruptObject: The stored model does not match its checksum (it is not loaded); the message says what
            to do.
        MissingObject: The stored model is gone.
    """
    if alias is not None and version is not None:
        raise UsageError("load a model by alias or by version, not both")
    validate_name(name, "model")
    meta, artifacts = _open(project)
    try:
        if version is not None:
            mat = find_version(meta, name, version).mat
            label = f"model '{name}' version {version}"
        else:
            mat, label = _model_alias(meta, name, alias or DEFAULT_ALIAS)
        if mat is None:
            raise UsageError(f"{label}: its materialization is not recorded in this database")
        return load_verified(mat, artifacts, label)
    finally:
        meta.close()


def load_alias(
    meta: MetadataStore, artifacts: ArtifactStore, alias: str, asset: str, partition: str | None = None
) -> Any:
    """The value `alias` of `asset` points at (for a snapshot alias: of `partition`), checksum-verified.

    Raises:
        UsageError: The asset has no such alias, or the alias points at another partition.
    """
    record = meta.alias(alias, asset)
    if record is None:
        known = [a.alias for a in meta.aliases(asset)]
        raise UsageError(
            f"'{asset}' has no alias '{alias}'.{did_you_mean(alias, known)} Its aliases: {', '.join(known) or 'none'} "
            f"(set one with `cairn alias set {alias} {asset}@<data version>`)"
        )
    if record.snapshot is not None:
        key = validate_partition(partition or "")
        mat = meta.snapshot(record.snapshot).get((asset, key))
        if mat is None:
            raise UsageError(
                f"alias '{alias}' of '{asset}' is snapshot '{record.snapshot}', which does not pin "
                f"{asset}{'@' + key if key else ''}; `cairn snapshot show {record.snapshot}` lists it"
            )
        return load_verified(mat, artifacts, f"'{asset}' at alias '{alias}' (snapshot {record.snapshot})")
    mats = meta.materializations_by_id([record.mat_id]) if record.mat_id is not None else []
    if not mats:
        raise UsageError(f"alias '{alias}' of '{asset}' points at materialization {record.mat_id}, which is missing")
    mat = mats[0]
    if partition is not None and partition != mat.partition:
        raise UsageError(
            f"alias '{alias}' of '{asset}' points at partition {mat.partition or '(none)'}, not {partition}; "
            "load it without a partition"
        )
    found = version_at(meta, asset, mat.id)
    label = f"model '{asset}' version {found.version}" if found else f"'{asset}' at alias '{alias}'"
    return load_verified(mat, artifacts, label)


def load_verified(mat: Materialization, artifacts: ArtifactStore, label: str) -> Any:
    """Read a materialization's value; a checksum mismatch or a missing object is an error that says what to do."""
    from cairn.io.reading import convert_table, load_stored

    try:
        return convert_table(load_stored(mat.stored, artifacts), "")
    except CorruptObject as exc:
        error = CorruptObject(
            f"{label} was not loaded: its stored file ({_short(mat.data_version)}) does not match the checksum "
            f"recorded when it was materialized in run {mat.run_id}, so it was changed or damaged after it was "
            f"written ({exc}). Nothing was deserialized. Run `cairn verify` to find and quarantine damaged objects, "
            f"then retrain it with `cairn run {mat.asset}` (a retrained model with other bytes is a new version "
            "that needs approval and promotion again)"
        )
        error.digest = exc.digest
        raise error from exc
    except MissingObject as exc:
        error_missing = MissingObject(
            f"{label} was not loaded: its stored file {_short(mat.data_version)} is missing from the artifact "
            f"store ({exc}). Run `cairn verify` to see what else is missing, then retrain it with "
            f"`cairn run {mat.asset}`"
        )
        error_missing.digest = exc.digest
        raise error_missing from exc


def _model_alias(meta: MetadataStore, name: str, alias: str) -> tuple[Materialization | None, str]:
    record = meta.alias(alias, name)
    if record is None or record.mat_id is None:
        find_version(meta, name)  # an unknown model: the error lists the known ones
        known = [a.alias for a in meta.aliases(name)]
        raise UsageError(
            f"model '{name}' has no alias '{alias}'.{did_you_mean(alias, known)} Its aliases: "
            f"{', '.join(known) or 'none'} (promote a version: cairn models promote {name} VERSION --alias {alias})"
        )
    found = version_at(meta, name, record.mat_id)
    mats = meta.materializations_by_id([record.mat_id])
    label = f"model '{name}' version {found.version} (alias '{alias}')" if found else f"model '{name}' alias '{alias}'"
    return (mats[0] if mats else None), label


def _open(project: str | os.PathLike[str] | Settings | Project) -> tuple[MetadataStore, ArtifactStore]:
    from cairn.config import Settings, load_settings
    from cairn.project import Project
    from cairn.storage.factory import open_artifacts
    from cairn.storage.metadata import open_metadata

    if isinstance(project, Project):
        settings = project.settings
    elif isinstance(project, Settings):
        settings = project
    else:
        settings = load_settings(project)
    meta = open_metadata(settings.database, settings.root)
    try:
        return meta, open_artifacts(settings.artifacts, settings.root, settings.artifacts_options)
    except BaseException:
        meta.close()
        raise


def _short(digest: str) -> str:
    return digest[:15] + "…" if len(digest) > 15 else digest
