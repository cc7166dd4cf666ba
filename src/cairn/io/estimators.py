"""scikit-learn models stored with skops: the default for them, with bytes that depend only on the model.

skops writes a zip of a ``schema.json`` and ``.npy`` members whose names, ``__id__`` fields and timestamps come
from ``id()`` of objects and the clock, so the same model would hash differently every time (no early cutoff,
and a retrain to identical weights would register a new model version). The zip is rewritten canonically:
members renumbered in the order skops wrote them, ids renumbered in order of first appearance, fixed
timestamps. skops reads it back unchanged.

Loading happens only after the artifact store verified the bytes against their recorded checksum. skops then
still refuses types it does not trust by default; of those, only scikit-learn's own (the tree structure of
forests and boosted trees) are trusted, since these bytes are exactly what this project wrote.
"""

from __future__ import annotations

import importlib
import io
import json
from types import ModuleType
from typing import Any, Final

from cairn.core.records import StoredValue
from cairn.errors import SerializationError
from cairn.io.jsonvalue import type_name
from cairn.io.ports import Store, write_object

FORMAT: Final = "skops"
_SCHEMA: Final = "schema.json"
_EPOCH: Final = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip member can carry
_TRUSTED_PACKAGE: Final = "sklearn."


def is_sklearn_model(value: object) -> bool:
    """Whether a value is a scikit-learn estimator (or pipeline): stored with skops unless ``io=`` says else."""
    cls = type(value)
    return cls.__module__.split(".")[0] == "sklearn" and callable(getattr(value, "get_params", None))


def dump_skops(value: object, store: Store, *, explicit: bool = False) -> StoredValue:
    """Write a model with skops, canonically (see the module docstring); `explicit` when ``io="skops"`` asked.

    Raises:
        SerializationError: skops is not installed, or cannot serialize the value.
    """
    skops_io = _skops(explicit)
    try:
        data = canonical_skops(skops_io.dumps(value))
    except (TypeError, AttributeError, ValueError) as exc:
        raise SerializationError(
            f'skops cannot store a {type_name(value)}: {exc}. Store it with io="joblib" (an explicit opt-in to '
            "pickling) or return a table, array or JSON-able value."
        ) from exc
    digest, size = write_object(store, lambda sink: sink.write(data))
    return StoredValue(digest, size, FORMAT, type_name(value))


def load_skops(data: bytes) -> Any:
    """Read a model back from bytes the store has verified against their recorded checksum.

    Raises:
        SerializationError: skops is missing, or the object holds types outside scikit-learn that skops does not
            trust.
    """
    skops_io = _skops(True)
    try:
        untrusted = skops_io.get_untrusted_types(data=data)
        trusted = [name for name in untrusted if name.startswith(_TRUSTED_PACKAGE)]
        return skops_io.loads(data, trusted=trusted)
    except Exception as exc:
        raise SerializationError(
            f"skops refused to load the object: {exc}. skops loads only types it trusts; load it with "
            'skops.io.loads(data, trusted=[...]) after reviewing them, or store the model with io="joblib".'
        ) from exc


def canonical_skops(data: bytes) -> bytes:
    """The same skops file with member names, object ids and timestamps that do not depend on the process."""
    import zipfile  # only a model stored with skops needs it

    source = zipfile.ZipFile(io.BytesIO(data))
    members = [info for info in source.infolist() if info.filename != _SCHEMA]
    names = {info.filename: f"{n}{_suffix(info.filename)}" for n, info in enumerate(members)}
    schema = _renumber(json.loads(source.read(_SCHEMA)), names, {})
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for info in [*members, source.getinfo(_SCHEMA)]:
            name = names.get(info.filename, info.filename)
            member = zipfile.ZipInfo(name, date_time=_EPOCH)
            member.compress_type = info.compress_type
            member.external_attr = info.external_attr
            content = source.read(info) if info.filename != _SCHEMA else json.dumps(schema, indent=2).encode()
            target.writestr(member, content)
    return out.getvalue()


def _renumber(node: Any, names: dict[str, str], ids: dict[Any, int]) -> Any:
    """Walk the schema in order: ``__id__`` values get 1, 2, ... by first appearance, ``file`` the new names."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "__id__" and isinstance(value, int):
                out[key] = ids.setdefault(value, len(ids) + 1)
            elif key == "file" and isinstance(value, str) and value in names:
                out[key] = names[value]
            else:
                out[key] = _renumber(value, names, ids)
        return out
    if isinstance(node, list):
        return [_renumber(item, names, ids) for item in node]
    return node


def _suffix(name: str) -> str:
    dot = name.rfind(".")
    return name[dot:] if dot > 0 else ""


def _skops(explicit: bool) -> ModuleType:
    try:
        return importlib.import_module("skops.io")
    except ImportError:
        if explicit:
            raise SerializationError(
                "io='skops' needs the skops package, which is not installed. Install it with `pip install skops`, "
                'or use io="pickle".'
            ) from None
        raise SerializationError(
            "scikit-learn models are stored with skops, which is not installed: `pip install skops` (or "
            "`pip install 'cairn[examples]'`), or opt in to pickling with io=\"joblib\" on @asset."
        ) from None
