"""What a model version must have before it is promoted: its blocking gates passed, and an approval that counts.

Pure functions of the recorded values; `promotion.py` applies them before it moves an alias.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cairn.core.governance import ApprovalRecord
from cairn.security import Role

GATES_KEY = "cairn.gates"
MODEL_CARD_KEY = "model_card"


@dataclass(frozen=True, slots=True)
class RecordedGate:
    """One gate's result on a model version, as the gate code recorded it under ``metadata["cairn.gates"]``."""

    gate: str
    passed: bool
    blocking: bool
    metrics: Mapping[str, Any] = field(default_factory=dict)
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "gate": self.gate,
            "passed": self.passed,
            "blocking": self.blocking,
            "metrics": dict(self.metrics),
            "detail": self.detail,
        }


def gate_results(metadata: Mapping[str, Any]) -> tuple[RecordedGate, ...]:
    """The gate results recorded in a materialization's metadata; none when the key is missing.

    A result that does not say whether it passed counts as failed, and one that does not say whether it blocks
    counts as blocking: a malformed record fails closed.
    """
    raw = metadata.get(GATES_KEY) or []
    out = []
    for item in raw if isinstance(raw, list) else [raw]:
        entry: Mapping[str, Any] = item if isinstance(item, Mapping) else {"gate": str(item)}
        metrics = entry.get("metrics")
        out.append(
            RecordedGate(
                str(entry.get("gate", "?")),
                entry.get("passed") is True,
                entry.get("blocking") is not False,
                dict(metrics) if isinstance(metrics, Mapping) else {},
                "" if entry.get("detail") is None else str(entry.get("detail")),
            )
        )
    return tuple(out)


def approval_counts(approval: ApprovalRecord, author: str) -> bool:
    """Whether an approval counts for promotion: its approver is not the author and is an approver (or admin)
    now, enabled."""
    if approval.approver == author or approval.approver_role is None:
        return False
    try:
        return Role(approval.approver_role).allows(Role.APPROVER)
    except ValueError:
        return False


def promotion_problems(
    name: str, version: int, author: str, gates: Sequence[RecordedGate], approvals: Iterable[ApprovalRecord]
) -> list[str]:
    """Everything that keeps a model version from being promoted, in words; empty when it may be."""
    problems = [
        f"blocking gate '{g.gate}' failed" + (f" ({g.detail})" if g.detail else "")
        for g in gates
        if g.blocking and not g.passed
    ]
    listed = list(approvals)
    if not any(approval_counts(a, author) for a in listed):
        notes = []
        for a in listed:
            if a.approver == author:
                notes.append(f"{a.approver}'s own approval does not count")
            else:
                notes.append(f"{a.approver} is no longer an enabled approver")
        why = f" ({'; '.join(notes)})" if notes else ""
        problems.append(
            f"it has no approval by an approver other than its author {author}{why}: another user with the "
            f"approver role approves it with `cairn models approve {name} {version} --reason TEXT`"
        )
    return problems
