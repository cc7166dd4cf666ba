"""The registry's pure rules (what blocks a promotion, which approvals count) and the canonical skops format."""

from __future__ import annotations

import pytest

from cairn.core.governance import ApprovalRecord
from cairn.errors import UsageError
from cairn.registry.rules import approval_counts, gate_results, promotion_problems
from cairn.registry.versions import parse_model_ref


def approval(approver: str, role: str | None = "approver") -> ApprovalRecord:
    return ApprovalRecord("ranker", 1, approver, "ok", 1.0, role)


def test_gate_results_are_read_as_recorded_and_a_malformed_one_fails_closed() -> None:
    gates = gate_results(
        {
            "cairn.gates": [
                {"gate": "auc", "passed": True, "blocking": True, "metrics": {"auc": 0.8}, "detail": "ok"},
                {"gate": "size", "passed": False, "blocking": False, "metrics": {}, "detail": ""},
                {"gate": "odd"},
            ]
        }
    )
    assert [(g.gate, g.passed, g.blocking) for g in gates] == [("auc", True, True), ("size", False, False),
                                                               ("odd", False, True)]  # fmt: skip
    assert gates[0].metrics == {"auc": 0.8} and gate_results({}) == ()


def test_an_approval_counts_only_by_an_enabled_approver_who_is_not_the_author() -> None:
    assert approval_counts(approval("bob"), "alice")
    assert approval_counts(approval("root", "admin"), "alice")
    assert not approval_counts(approval("alice"), "alice")
    assert not approval_counts(approval("bob", None), "alice")  # disabled or gone
    assert not approval_counts(approval("olga", "operator"), "alice")
    assert not approval_counts(approval("x", "wizard"), "alice")


def test_promotion_problems_name_each_failed_blocking_gate_and_the_missing_approval() -> None:
    gates = gate_results(
        {
            "cairn.gates": [
                {"gate": "auc", "passed": False, "blocking": True, "detail": "auc 0.6 < 0.7"},
                {"gate": "size", "passed": False, "blocking": False},
            ]
        }
    )
    problems = promotion_problems("ranker", 1, "alice", gates, [approval("alice"), approval("bob", None)])
    assert problems[0] == "blocking gate 'auc' failed (auc 0.6 < 0.7)"
    assert "alice's own approval does not count; bob is no longer an enabled approver" in problems[1]
    assert "cairn models approve ranker 1 --reason TEXT" in problems[1]
    assert promotion_problems("ranker", 1, "alice", gates[1:], [approval("bob")]) == []


def test_model_references() -> None:
    assert parse_model_ref("ranker") == ("ranker", None)
    assert parse_model_ref("ranker@3") == ("ranker", 3) == parse_model_ref("ranker@v3")
    with pytest.raises(UsageError, match="after '@' comes a version number"):
        parse_model_ref("ranker@latest")


def test_skops_files_are_canonical_and_load_back() -> None:
    pytest.importorskip("skops")
    import numpy as np
    import skops.io
    from sklearn.ensemble import GradientBoostingClassifier

    from cairn.io.estimators import canonical_skops, is_sklearn_model, load_skops

    x = np.random.RandomState(0).rand(40, 3)
    y = x[:, 0] > 0.5
    models = [GradientBoostingClassifier(n_estimators=2, random_state=0).fit(x, y) for _ in range(2)]
    first, second = (canonical_skops(skops.io.dumps(m)) for m in models)
    assert first == second and is_sklearn_model(models[0]) and not is_sklearn_model({"a": 1})
    assert (load_skops(first).predict(x) == models[0].predict(x)).all()
