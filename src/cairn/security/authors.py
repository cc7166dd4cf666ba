"""Who a run is by: the user in ``CAIRN_TOKEN``, else the operating system's user; the author of its models.

Here rather than in `cairn.registry`: every run asks, and that should not import promotion, gates and aliases.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from cairn.security.access import current_user

if TYPE_CHECKING:
    from cairn.storage.metadata import MetadataStore


def run_author(meta: MetadataStore, environ: Mapping[str, str] | None = None) -> str:
    """The name a run records as its actor and as the author of the model versions it registers.

    A token that names no user (or a disabled one) fails the run rather than credit someone else.

    Raises:
        AccessDenied: ``CAIRN_TOKEN`` is set but is no enabled user's token.
    """
    user = current_user(meta, environ)
    if user is not None:
        return user.name
    return os_user()


def os_user() -> str:
    """The operating system's name of the user running this process (``uid:N`` when it has none)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no passwd entry and no LOGNAME/USER (some containers)
        return f"uid:{os.getuid()}"
