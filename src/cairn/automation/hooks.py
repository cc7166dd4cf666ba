"""The callbacks called with every finished tick (see the package docstring): the observability seam."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from cairn.core.automation import TickRecord
    from cairn.engine.results import RunResult
    from cairn.storage.metadata import MetadataStore


class TickHook(Protocol):
    """Called after a tick reached its final status; the result is None when no run was started."""

    def __call__(self, meta: MetadataStore, tick: TickRecord, result: RunResult | None, /) -> None: ...


hooks: list[TickHook] = []


def notify(meta: MetadataStore, tick: TickRecord, result: RunResult | None, log: Callable[[str], None]) -> None:
    """Call every hook; one that raises is logged, and the others are still called."""
    for hook in list(hooks):
        try:
            hook(meta, tick, result)
        except Exception as exc:  # a broken observer must not stop the daemon
            name = getattr(hook, "__qualname__", repr(hook))
            log(f"warning: tick hook {name} raised {type(exc).__name__}: {exc}")
