"""The registered versions of model assets, each with what it was trained from, its gates, approvals and aliases."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cairn.core.governance import AliasRecord, ApprovalRecord, ModelVersionRecord
from cairn.core.records import Materialization
from cairn.errors import UsageError, did_you_mean
from cairn.registry.rules import MODEL_CARD_KEY, RecordedGate, approval_counts, gate_results, promotion_problems

if TYPE_CHECKING:
    from cairn.storage.metadata import MetadataStore


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """One version of a model: its record, the materialization behind it, approvals and the aliases on it."""

    record: ModelVersionRecord
    mat: Materialization | None
    approvals: tuple[ApprovalRecord, ...] = ()
    aliases: tuple[str, ...] = ()
    gates: tuple[RecordedGate, ...] = ()  # the gate results recorded with it (none when no gate ran)

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def version(self) -> int:
        return self.record.version

    @property
    def author(self) -> str:
        return self.record.author

    @property
    def label(self) -> str:
        """``name@version``, as commands take it."""
        return f"{self.name}@{self.version}"

    @property
    def model_card(self) -> Any:
        """What the asset recorded with ``ctx.add_metadata(model_card=...)``, or None."""
        return self.mat.metadata.get(MODEL_CARD_KEY) if self.mat is not None else None

    @property
    def counted_approvals(self) -> tuple[ApprovalRecord, ...]:
        """The approvals that count for promotion (by an enabled approver who is not the author)."""
        return tuple(a for a in self.approvals if approval_counts(a, self.author))

    def problems(self) -> list[str]:
        """What keeps this version from promotion; empty when it may be promoted."""
        missing = [] if self.mat is not None else [f"its materialization {self.record.mat_id} is not recorded"]
        return missing + promotion_problems(self.name, self.version, self.author, self.gates, self.approvals)

    def gate_summary(self) -> str:
        """``-`` (no gates), ``3 passed`` or ``1 blocking failed, 2 passed``."""
        gates = self.gates
        if not gates:
            return "-"
        blocking = sum(1 for g in gates if g.blocking and not g.passed)
        warned = sum(1 for g in gates if not g.blocking and not g.passed)
        passed = len(gates) - blocking - warned
        parts = [f"{blocking} blocking failed"] if blocking else []
        parts += [f"{warned} warning{'s' if warned != 1 else ''}"] if warned else []
        parts += [f"{passed} passed"] if passed else []
        return ", ".join(parts)

    def to_dict(self, *, details: bool = False) -> dict[str, Any]:
        """The JSON form of `cairn models list`; with `details`, everything `cairn models show` prints."""
        out = self.record.to_dict()
        out["partition"] = (self.mat.partition or None) if self.mat is not None else None
        out["aliases"] = list(self.aliases)
        out["approved_by"] = [a.approver for a in self.counted_approvals]
        out["gates"] = {
            "total": len(self.gates),
            "blocking_failed": [g.gate for g in self.gates if g.blocking and not g.passed],
        }
        problems = self.problems()
        out["promotable"] = not problems
        if not details:
            return out
        mat = self.mat
        out["gates"] = [g.to_dict() for g in self.gates]
        out["approvals"] = [a.to_dict() for a in self.approvals]
        out["problems"] = problems
        out["model_card"] = self.model_card
        if mat is not None:
            out["materialization"] = mat.to_dict(
                "id", "asset", "partition", "cache_key", "code_version", "run_id", "attempt", "created_at",
                "duration_s", "size", "format", "pytype", "seed", "params", "inputs", "metrics",
            )  # fmt: skip
            out["metadata"] = {k: v for k, v in mat.metadata.items() if k not in ("cairn.gates", MODEL_CARD_KEY)}
        return out


def models(meta: MetadataStore, name: str | None = None) -> list[ModelVersion]:
    """Every registered model version (of one model), by name and version, with approvals and aliases.

    A handful of queries whatever the number of versions: versions, their materializations, approvals and aliases.
    """
    records = meta.model_versions(name)
    return _views(meta, records, meta.approvals(name), meta.aliases(name))


def version(meta: MetadataStore, name: str, number: int | None = None) -> ModelVersion:
    """One version of a model (its newest when `number` is None).

    Raises:
        UsageError: The model has no versions, or not this one; the message lists what exists.
    """
    record = meta.model_version(name, number)
    if record is None:
        raise _unknown(meta, name, number)
    return _views(meta, [record], meta.approvals(name, record.version), meta.aliases(name))[0]


def version_at(meta: MetadataStore, name: str, mat_id: int) -> ModelVersion | None:
    """The version of `name` that materialization `mat_id` is, or None."""
    record = meta.model_version_at(name, mat_id)
    if record is None:
        return None
    return _views(meta, [record], meta.approvals(name, record.version), meta.aliases(name))[0]


def parse_model_ref(text: str) -> tuple[str, int | None]:
    """``ranker`` → (ranker, None); ``ranker@3`` (or ``ranker@v3``) → (ranker, 3).

    Raises:
        UsageError: What follows ``@`` is not a version number.
    """
    name, at, number = text.partition("@")
    if not at:
        return name, None
    digits = number[1:] if number[:1] in ("v", "V") else number
    if not (digits.isascii() and digits.isdigit()):  # '²' is a digit to isdigit, not to int
        raise UsageError(f"{text!r}: after '@' comes a version number, e.g. {name}@3 (`cairn models list` lists them)")
    return name, int(digits)


def _views(
    meta: MetadataStore,
    records: Sequence[ModelVersionRecord],
    approvals: Sequence[ApprovalRecord],
    aliases: Sequence[AliasRecord],
) -> list[ModelVersion]:
    wanted = {r.mat_id for r in records} | {a.mat_id for a in aliases if a.mat_id is not None}
    mats = {m.id: m for m in meta.materializations_by_id(sorted(wanted))}
    by_version: dict[tuple[str, int], list[ApprovalRecord]] = {}
    for a in approvals:
        by_version.setdefault((a.name, a.version), []).append(a)
    # An alias points at a materialization; a version is every materialization with its data version.
    on_version: dict[tuple[str, str], list[str]] = {}
    for alias in aliases:
        target = mats.get(alias.mat_id) if alias.mat_id is not None else None
        if target is not None:
            on_version.setdefault((alias.asset, target.data_version), []).append(alias.alias)
    out = []
    for r in records:
        mat = mats.get(r.mat_id)
        out.append(
            ModelVersion(
                r,
                mat,
                tuple(by_version.get((r.name, r.version), ())),
                tuple(sorted(on_version.get((r.name, r.data_version), ()))),
                gate_results(mat.metadata) if mat is not None else (),
            )
        )
    return out


def _unknown(meta: MetadataStore, name: str, number: int | None) -> UsageError:
    existing = meta.model_versions(name)
    if not existing:
        known = sorted({r.name for r in meta.model_versions()})
        return UsageError(
            f"model '{name}' has no registered versions.{did_you_mean(name, known)} Known models: "
            f'{", ".join(known) or "none"} (a version is registered when a kind="model" asset materializes)'
        )
    numbers = ", ".join(str(r.version) for r in existing)
    return UsageError(f"model '{name}' has no version {number}; its versions are {numbers}")
