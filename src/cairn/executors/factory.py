"""Builds the executor that ``[executor] kind`` names; dask and ray are imported here, only when chosen."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from cairn.errors import ConfigError
from cairn.executors.base import Executor

EXTRAS = {"dask": ("dask", "distributed"), "ray": ("ray",)}  # executor kind -> the modules its extra installs


def create_executor(kind: str, workers: int, address: str | None = None, start: str = "fork") -> Executor:
    """Build the executor named by ``[executor] kind`` (or ``--executor``).

    ``dask`` and ``ray`` connect to the cluster at `address`, or start a local one with `workers` workers
    (0: one per core) that they stop again on `close`.
    """
    if kind == "inline":
        from cairn.executors.inline import InlineExecutor

        return InlineExecutor()
    if kind == "thread":
        from cairn.executors.local import ThreadExecutor

        return ThreadExecutor(workers)
    if kind == "process":
        from cairn.executors.local import ProcessExecutor

        return ProcessExecutor(workers, start)
    if kind == "dask":
        with _extra("dask"):
            from cairn.executors.dask import DaskExecutor
        return DaskExecutor(workers, address)
    if kind == "ray":
        with _extra("ray"):
            from cairn.executors.ray import RayExecutor
        return RayExecutor(workers, address)
    raise ConfigError(
        f"executor '{kind}' is not known: use inline, thread, process, dask or ray "
        "(in [executor] kind of cairn.toml or --executor)"
    )


@contextlib.contextmanager
def _extra(kind: str) -> Iterator[None]:
    """Turn the import error of a missing optional dependency into the command that installs it."""
    try:
        yield
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top not in EXTRAS[kind]:
            raise
        raise ConfigError(
            f"the {kind} executor needs the '{top}' package, which is not installed: run "
            f"`pip install 'cairn[{kind}]'`, or choose another [executor] kind (inline, thread, process)"
        ) from exc
