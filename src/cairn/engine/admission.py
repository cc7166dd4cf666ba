"""Admission: whether a ready step may start now, and what it holds while it runs.

A step starts when its CPU and memory fit beside what runs (a step asking for the whole machine runs alone),
its pool has a free slot (counted across every engine on the database), and no circuit breaker of a system
it uses is open. What a started step holds is given back when it ends, however it ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Protocol

from cairn.core.asset import AssetDef, Resources
from cairn.core.keys import StepId
from cairn.core.retry import BreakerPolicy, CircuitBreaker
from cairn.executors.base import Capacity
from cairn.storage.pools import SlotHolder, SlotLease

# Seconds between asks for a slot of a pool that other engines fill.
POOL_POLL_S = 0.2


class SlotStore(Protocol):
    """What admission asks of the metadata store: pool slots shared with other engines."""

    def acquire_pool_slot(
        self, pool: str, slots: int, run_id: str, owner: str, ttl_s: float, step: str
    ) -> SlotLease | None: ...

    def release_pool_slot(self, lease: SlotLease) -> None: ...

    def renew_pool_slots(self, held: Sequence[SlotLease], ttl_s: float) -> list[SlotLease]: ...

    def pool_holders(self, pool: str) -> list[SlotHolder]: ...


class Verdict(StrEnum):
    START = "start"  # admitted: it holds its share until `release`
    DEFER = "defer"  # not now: try again in a later pass
    BREAKER_OPEN = "breaker open"  # a system it uses failed too often in a row: fail it without running


class Admission:
    """The CPU/memory ledger, the pool counts and the circuit breakers of one run."""

    def __init__(
        self,
        slots: SlotStore,
        pools: Mapping[str, int],
        breakers: Mapping[str, BreakerPolicy],
        run_id: str,
        owner: str,
        ttl_s: float,
        reap: Callable[[str, str], None],
    ) -> None:
        self._slots = slots
        self._pools = pools
        self._policies = breakers
        self._run_id = run_id
        self._owner = owner
        self._ttl_s = ttl_s
        self._reap = reap  # called with (run_id, owner) of each holder of a full pool: abandons dead engines
        self.cpu_used = 0.0
        self.mem_used = 0
        self._held: dict[StepId, tuple[float, int, str]] = {}  # what each admitted step holds
        self._pool_use: dict[str, int] = {}
        self._leases: dict[StepId, SlotLease] = {}  # slots held in the database
        self._breakers: dict[str, CircuitBreaker] = {}
        self._full: set[str] = set()  # pools whose slots other engines hold, as found in this pass
        self.pool_poll: float | None = None  # when to ask again for a slot of a full pool

    def new_pass(self) -> None:
        """Forget what the last pass over the ready queue found out about full pools."""
        self._full.clear()
        self.pool_poll = None

    def saturated(self, capacity: Capacity) -> bool:
        """Whether running steps hold every CPU (nothing more can start)."""
        return bool(self._held) and self.cpu_used >= capacity.cpu - 1e-9

    def admit(self, step: StepId, asset: AssetDef, capacity: Capacity) -> Verdict:
        """Admit a step (it then holds its share, its pool slot), defer it, or refuse it for an open breaker."""
        cpu, mem, alone = share(asset.resources, capacity)
        if self._held and (
            alone or self.cpu_used + cpu > capacity.cpu + 1e-9 or self.mem_used + mem > capacity.memory_mb
        ):
            return Verdict.DEFER
        if not self._take_slot(step, asset):
            return Verdict.DEFER
        verdicts = [self._breaker(system).admit(time.time()) for system in asset.uses]
        if "fail" in verdicts or "wait" in verdicts:
            self._give_slot_back(step)
            return Verdict.BREAKER_OPEN if "fail" in verdicts else Verdict.DEFER
        self.cpu_used += cpu
        self.mem_used += mem
        self._held[step] = (cpu, mem, asset.pool or "")
        if asset.pool:
            self._pool_use[asset.pool] = self._pool_use.get(asset.pool, 0) + 1
        return Verdict.START

    def release(self, step: StepId) -> None:
        """Give back what an admitted step holds (its share and its pool slot); nothing when it holds nothing."""
        held = self._held.pop(step, None)
        if held is None:
            return
        cpu, mem, pool = held
        self.cpu_used -= cpu
        self.mem_used -= mem
        if pool:
            self._pool_use[pool] -= 1
        self._give_slot_back(step)

    def record(self, systems: Iterable[str], ok: bool) -> None:
        """Count an attempt's outcome against the breakers of the systems it used."""
        for system in systems:
            self._breaker(system).record(ok, time.time())

    def due(self, now: float) -> list[float]:
        """Monotonic times at which a deferred step may become admissible (a pool poll, a breaker half-opening)."""
        times = [self.pool_poll] if self.pool_poll is not None else []
        times += [now + b.wait_time(time.time()) for b in self._breakers.values() if b.state == "open"]
        return times

    def renew(self) -> None:
        """Extend the pool slots held in the database. A slot lost meanwhile (the engine stalled past its
        expiry) stays lost: the step runs on, and giving it back is a no-op, as its token is no longer current."""
        self._slots.renew_pool_slots(list(self._leases.values()), self._ttl_s)

    def _take_slot(self, step: StepId, asset: AssetDef) -> bool:
        """This engine's own count answers first (no query while it fills the pool itself); then the step
        takes a slot in the database, or waits while other engines hold them all."""
        if not asset.pool:
            return True
        limit = self._pools[asset.pool]
        if self._pool_use.get(asset.pool, 0) >= limit or asset.pool in self._full:
            return False
        lease = self._slots.acquire_pool_slot(asset.pool, limit, self._run_id, self._owner, self._ttl_s, str(step))
        if lease is None:
            self._full.add(asset.pool)
            for holder in self._slots.pool_holders(asset.pool):
                self._reap(holder.run_id, holder.owner)
            self.pool_poll = time.monotonic() + POOL_POLL_S
            return False
        self._leases[step] = lease
        return True

    def _give_slot_back(self, step: StepId) -> None:
        lease = self._leases.pop(step, None)
        if lease is not None:
            self._slots.release_pool_slot(lease)

    def _breaker(self, system: str) -> CircuitBreaker:
        if system not in self._breakers:
            self._breakers[system] = CircuitBreaker(self._policies.get(system, BreakerPolicy()))
        return self._breakers[system]


def share(resources: Resources, capacity: Capacity) -> tuple[float, int, bool]:
    """The CPU and memory a step holds while it runs, and whether it must run alone: a step that asks for the
    whole machine (or more) holds all of it, so nothing starts beside it."""
    alone = resources.cpu >= capacity.cpu or (resources.memory_mb > 0 and resources.memory_mb >= capacity.memory_mb)
    if alone:
        return capacity.cpu, capacity.memory_mb, True
    return resources.cpu, resources.memory_mb, False
