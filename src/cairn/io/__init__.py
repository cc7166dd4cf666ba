"""Serializers that store a step's return value by its type, and load it back verified.

The serializers are imported on first use, so that `import cairn` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cairn.io.files import Files

if TYPE_CHECKING:
    from cairn.core.records import StoredValue
    from cairn.io.ports import Store

__all__ = ["Files", "dump", "load"]


def dump(value: object, store: Store, io: str | None = None) -> StoredValue:
    """Store `value` by its type (or the format `io` names); see `cairn.io.serializers.dump`."""
    from cairn.io.serializers import dump as dump_value

    return dump_value(value, store, io)


def load(stored: StoredValue, store: Store) -> Any:
    """Read a stored value back, verifying its checksum first; see `cairn.io.serializers.load`."""
    from cairn.io.serializers import load as load_value

    return load_value(stored, store)
