"""`Context`: what an asset function sees of its run (partition, params, seed, logging, metrics, scratch)."""

from __future__ import annotations

import logging
import os
import pickle
import time
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class StepLogger:
    """A logger whose lines are captured with the attempt (see `cairn logs RUN STEP`)."""

    def __init__(self, name: str) -> None:
        self.records: list[tuple[float, str, str]] = []
        self._logger = logging.getLogger(f"cairn.asset.{name}")

    def _log(self, level: str, msg: str, *args: Any) -> None:
        text = msg % args if args else str(msg)
        self.records.append((time.time(), level.upper(), text))
        self._logger.log(_LEVELS[level], text)

    def debug(self, msg: str, *args: Any) -> None:
        self._log("debug", msg, *args)

    def info(self, msg: str, *args: Any) -> None:
        self._log("info", msg, *args)

    def warning(self, msg: str, *args: Any) -> None:
        self._log("warning", msg, *args)

    def error(self, msg: str, *args: Any) -> None:
        self._log("error", msg, *args)


def checkpoint_path(project_dir: str, cache_key: str) -> Path:
    """Where the checkpoint of the attempts computing `cache_key` is kept."""
    return Path(project_dir) / ".cairn" / "checkpoints" / cache_key.replace(":", "-")


class Checkpoint:
    """Saved state of a long step: a retry or a resumed run with the same cache key gets the last state.

    The state is pickled into a local file with a SHA-256 checksum beside it; it is only unpickled when
    the checksum matches, and the engine deletes it once the step's result is committed (never before: an
    attempt whose commit is lost keeps its state for the next one).
    """

    def __init__(self, path: Path) -> None:
        self._path = path

    def save(self, state: Any) -> None:
        data = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            fh.write(_checksum(data) + data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self._path)

    def load(self, default: Any = None) -> Any:
        try:
            raw = self._path.read_bytes()
        except FileNotFoundError:
            return default
        digest, data = raw[:32], raw[32:]
        if _checksum(data) != digest:
            return default
        return pickle.loads(data)

    def clear(self) -> None:
        self._path.unlink(missing_ok=True)


def _checksum(data: bytes) -> bytes:
    import hashlib  # OpenSSL's: only a step that checkpoints loads it

    return hashlib.sha256(data).digest()


class Context:
    """Passed to an asset function that asks for it (a parameter annotated `Context` or named `ctx`).

    ``input_versions`` maps each input parameter to the data version it was given, or, for a windowed or
    all-partitions input, to ``{partition key: data version}``: what a dataset spec pins.
    """

    def __init__(
        self,
        *,
        asset: str,
        partition: str,
        params: Mapping[str, Any],
        seed: int,
        run_id: str,
        attempt: int,
        workdir: Path,
        checkpoint: Checkpoint,
        partition_window: tuple[Any, Any] | None = None,
        input_versions: Mapping[str, Any] | None = None,
    ) -> None:
        self.asset = asset
        self.partition: str | None = partition or None
        self.partition_window = partition_window
        self.params: Mapping[str, Any] = MappingProxyType(dict(params))
        self.seed = seed
        self.input_versions: Mapping[str, Any] = MappingProxyType(dict(input_versions or {}))
        self.run_id = run_id
        self.attempt = attempt
        self.log = StepLogger(asset)
        self.metrics: dict[str, float] = {}
        self.metadata: dict[str, Any] = {}
        self._workdir = workdir
        self.checkpoint = checkpoint

    @property
    def workdir(self) -> Path:
        """A scratch folder for this attempt, removed after the step."""
        self._workdir.mkdir(parents=True, exist_ok=True)
        return self._workdir

    def log_metric(self, name: str, value: float) -> None:
        """Record a numeric metric with this materialization."""
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise TypeError(f"metric '{name}' must be a number, got {value!r}")
        self.metrics[name] = float(value)

    def log_metrics(self, metrics: Mapping[str, float]) -> None:
        """Record several numeric metrics."""
        for name, value in metrics.items():
            self.log_metric(name, value)

    def add_metadata(self, **values: Any) -> None:
        """Attach JSON-able metadata (row counts, notes, links) to this materialization."""
        self.metadata.update(values)
