"""The one exception tree of cairn: every error says what failed, with the values, and how to fix it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class CairnError(Exception):
    """Base of every error cairn raises on purpose."""

    exit_code = 1


class DefinitionError(CairnError):
    """A pipeline definition is wrong (unknown input, cycle, duplicate, bad option)."""

    exit_code = 2


class ConfigError(CairnError):
    """`cairn.toml` or a command-line setting is malformed. Not retryable."""

    exit_code = 2


class UsageError(CairnError):
    """A command was called with arguments that cannot work (unknown asset, bad selection)."""

    exit_code = 2


class StoreError(CairnError):
    """The metadata database or the artifact store cannot be used as it is."""


class ConnectionLost(StoreError):
    """The connection to the metadata database was lost and the command cannot go on safely.

    Either a write was cut off while it may have committed (whether it took effect is unknown, so it is not
    repeated), or no new connection could be made for a while. A rerun of `cairn run` resumes from what was
    committed: a step whose result was recorded is cached, the others run again.
    """


class CorruptObject(StoreError):
    """A stored object's bytes do not match its recorded checksum or size."""

    digest: str | None = None


class MissingObject(StoreError):
    """A stored object recorded in the metadata is not in the artifact store."""

    digest: str | None = None


class SerializationError(CairnError):
    """A value cannot be stored or loaded with the chosen serializer."""

    exit_code = 2


class NonRetryable(CairnError):
    """An error that fails its step at once, without further attempts."""


class Fatal(NonRetryable):
    """Raise from asset code to fail the step without retrying it."""


class ContractViolation(NonRetryable):
    """An output broke a blocking rule of its contract; nothing was published."""


class CheckFailed(NonRetryable):
    """A blocking check failed on an output; nothing was published."""


class CircuitOpen(NonRetryable):
    """An external system failed too often in a row; steps that use it are failed without running."""


class StepTimeout(CairnError):
    """An attempt ran longer than its `timeout` and was stopped. Retryable."""


class StepFailed(CairnError):
    """User code raised an exception inside a step."""


class StepCrashed(CairnError):
    """The worker process running a step died (killed, out of memory, segfault)."""


class SourceMissing(CairnError):
    """A source asset that is not partitioned has no file at its `path`."""


class LeaseLost(CairnError):
    """An attempt's lease was taken over by another engine; its result is not committed."""


class AccessDenied(CairnError):
    """The acting user is unknown, disabled, or lacks the role an action needs; the message says which."""

    exit_code = 2


class Refused(CairnError):
    """An approval, promotion, rollback or alias move that the registry's rules refuse; the message says what is
    missing and how to get it."""


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """Return a " Did you mean 'x'?" suffix for the closest candidate, or an empty string."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""
