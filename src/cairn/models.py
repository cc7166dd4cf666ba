"""`cairn.models`: load a registered model version, its checksum verified before anything deserializes it.

    import cairn
    ranker = cairn.models.load("ranker")               # what the alias "champion" points at
    ranker = cairn.models.load("ranker", alias="canary")
    ranker = cairn.models.load("ranker", version=3)

The registry itself (versions, approvals, promotion, aliases) is `cairn.registry`; `cairn models` is its CLI.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cairn.config import Settings
    from cairn.project import Project

__all__ = ["load"]


def load(
    name: str,
    alias: str | None = None,
    version: int | None = None,
    project: str | os.PathLike[str] | Settings | Project = ".",
) -> Any:
    """The model that `alias` (``champion`` when neither is given) or `version` of model `name` names.

    The stored object is checked against the size and BLAKE3 checksum recorded when it was trained before it is
    deserialized; a changed or damaged file raises `cairn.errors.CorruptObject` naming the model, its version and
    what to do (`cairn verify`, retrain).

    Args:
        name: The model asset.
        alias: An alias of the model (``champion``, ``production``, ...).
        version: A version number instead of an alias.
        project: The project folder (or its loaded settings or project).
    """
    from cairn.registry.loading import load_model

    return load_model(name, alias, version, project)
