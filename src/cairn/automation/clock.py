"""The daemon's clock, injected: the machine's, or one that tests (and `cairn tick --now`) set and move."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol

from cairn.errors import UsageError


class Clock(Protocol):
    """Where every automation decision takes "now" from, and how the daemon waits between ticks."""

    def now(self) -> datetime:
        """The current time, time-zone aware."""
        ...

    def sleep(self, seconds: float, wake: threading.Event) -> None:
        """Wait `seconds`, or less when `wake` is set."""
        ...


class SystemClock:
    """The machine's clock; sleeping waits on the event, so a stop request ends the wait at once."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float, wake: threading.Event) -> None:
        wake.wait(max(0.0, seconds))


class ManualClock:
    """A clock that only moves when told to: sleeping moves it forward by the time asked, at once."""

    def __init__(self, start: datetime) -> None:
        self._now = _aware(start)

    def now(self) -> datetime:
        return self._now

    def set(self, moment: datetime) -> None:
        self._now = _aware(moment)

    def advance(self, delta: timedelta | float) -> datetime:
        self._now += delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        return self._now

    def sleep(self, seconds: float, wake: threading.Event) -> None:
        if not wake.is_set():
            self.advance(max(0.0, seconds))


def parse_instant(text: str) -> datetime:
    """An ISO 8601 time with its offset (``2026-03-29T02:30:00+02:00``, ``...Z``); a UsageError otherwise."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"--now {text!r} is not an ISO 8601 time; write it like 2026-03-29T02:30:00+02:00 or 2026-03-29T00:30:00Z"
        ) from None
    if moment.tzinfo is None:
        raise UsageError(
            f"--now {text!r} has no UTC offset, so it names no single moment; add one, e.g. {text}+02:00 or {text}Z"
        )
    return moment


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"{moment!r} has no time zone; give an aware datetime (e.g. with tzinfo=UTC)")
    return moment
