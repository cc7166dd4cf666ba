"""Retry policies with exponential backoff and jitter, and circuit breakers for external systems."""

from __future__ import annotations

from dataclasses import dataclass, field

from cairn.errors import DefinitionError


@dataclass(frozen=True, slots=True)
class Retry:
    """How often a failing step is attempted and how long to wait between attempts.

    The wait before attempt ``n + 1`` is ``min(max_delay, backoff * factor ** (n - 1))``, scaled by a
    random factor in ``[0.5, 1.0]`` when `jitter` is on, so that many failing steps do not retry in lockstep.
    """

    max_attempts: int = 1
    backoff: float = 1.0
    factor: float = 2.0
    max_delay: float = 60.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise DefinitionError(f"Retry(max_attempts={self.max_attempts!r}) must be an integer >= 1")
        if self.backoff < 0 or self.factor < 1 or self.max_delay < 0:
            raise DefinitionError(
                f"Retry(backoff={self.backoff}, factor={self.factor}, max_delay={self.max_delay}) needs "
                "backoff >= 0, factor >= 1 and max_delay >= 0"
            )

    def delay(self, failed_attempt: int, rand: float) -> float:
        """Seconds to wait after attempt number `failed_attempt` (1-based); `rand` is uniform in [0, 1)."""
        base = min(self.max_delay, self.backoff * self.factor ** (failed_attempt - 1))
        return base * (0.5 + 0.5 * rand) if self.jitter else base


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """After `failures` failed attempts in a row, hold the system's steps for `cooldown` seconds."""

    failures: int = 5
    cooldown: float = 30.0


CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half-open"


@dataclass(slots=True)
class CircuitBreaker:
    """The state of one external system's breaker. Times are passed in: this module reads no clock.

    closed --N failures in a row--> open --cooldown over--> half-open --trial ok--> closed
                                                                 \\--trial fails--> failed for good
    """

    policy: BreakerPolicy = field(default_factory=BreakerPolicy)
    state: str = CLOSED
    consecutive_failures: int = 0
    opened_at: float = 0.0
    trial_running: bool = False

    def record(self, ok: bool, now: float) -> None:
        """Record the outcome of an attempt that used the system."""
        if ok:
            self.state, self.consecutive_failures, self.trial_running = CLOSED, 0, False
            return
        self.consecutive_failures += 1
        if self.state == HALF_OPEN:
            self.state = "tripped"
            self.trial_running = False
        elif self.consecutive_failures >= self.policy.failures:
            self.state, self.opened_at = OPEN, now

    def admit(self, now: float) -> str:
        """Whether a step using the system may start: "yes", "wait", or "fail" (the trial failed)."""
        if self.state == CLOSED:
            return "yes"
        if self.state == "tripped":
            return "fail"
        if self.state == OPEN and now - self.opened_at >= self.policy.cooldown:
            self.state = HALF_OPEN
        if self.state == HALF_OPEN and not self.trial_running:
            self.trial_running = True
            return "yes"
        return "wait"

    def wait_time(self, now: float) -> float:
        """Seconds until an open breaker lets a trial step through."""
        return max(0.0, self.opened_at + self.policy.cooldown - now) if self.state == OPEN else 0.0
