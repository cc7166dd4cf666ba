"""Opens the artifact store that a ``storage.artifacts`` setting names: local, in-memory or fsspec."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cairn.errors import ConfigError
from cairn.storage.artifacts import LocalArtifactStore
from cairn.storage.base import ArtifactStore
from cairn.storage.memory import MemoryArtifactStore

_URL_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


def open_artifacts(
    url: str, project_dir: str | os.PathLike[str], options: Mapping[str, Any] | None = None
) -> ArtifactStore:
    """Open the artifact store that a ``storage.artifacts`` setting names.

    Args:
        url: a path (relative ones are resolved against ``project_dir``), a ``file://`` URL, ``memory://``
            (the process-wide in-memory store) or any other fsspec URL (``s3://bucket/prefix``,
            ``memory://bucket/prefix``, ...).
        project_dir: the project's folder.
        options: the ``storage.artifacts_options`` table, passed to fsspec as storage options; only for
            fsspec URLs.

    Raises:
        ConfigError: the setting is empty, its scheme cannot be opened, or options are given for a store
            that takes none.
    """
    if not url.strip():
        raise ConfigError(
            "storage.artifacts is empty; set it to a folder (e.g. '.cairn/artifacts') or a URL such as "
            "s3://bucket/prefix."
        )
    scheme = _URL_SCHEME.match(url)
    if scheme is None:
        try:
            path = Path(url).expanduser()
        except RuntimeError as exc:  # ~name of a user this machine does not know
            raise ConfigError(f"storage.artifacts = {url!r}: {exc} Write the folder without ~, or fix it.") from exc
    elif scheme.group(1).lower() == "file":
        rest = url[scheme.end() :]
        rest = rest[len("localhost") :] if rest.startswith("localhost/") else rest
        from urllib.request import url2pathname

        path = Path(url2pathname(rest))
    elif url == "memory://":
        path = None
    else:
        from cairn.storage.remote import FsspecArtifactStore  # here: fsspec is imported only when used

        return FsspecArtifactStore(url, options)
    if options:
        raise ConfigError(
            f"[storage] artifacts_options is set, but storage.artifacts = {url!r} is not an fsspec URL, so "
            "nothing takes them. Remove artifacts_options, or set artifacts to a URL such as s3://bucket/prefix."
        )
    if path is None:
        return MemoryArtifactStore.shared()
    return LocalArtifactStore(path if path.is_absolute() else Path(project_dir) / path)
