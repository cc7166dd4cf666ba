"""Stages 8 and 9: validation gates, then the model artifact (model, checksum, card and report).

``gates`` compares the evaluation and calibration with thresholds; a failed critical gate fails the step
(a blocking check), so no model artifact is packaged. ``model`` writes ``model.pkl`` (the trained estimator,
byte for byte), ``model_card.json`` (the SHA-256 of model.pkl, feature list, Platt calibration, metrics,
gates, the dataset spec, seeds, hyperparameters, the data versions it was built from) and ``report.md``.
Training never promotes: the artifact is a candidate for a separate, reviewed promotion, which its
promotion gates (``@gate("model")``, below) decide: lift over the popularity baseline, no regression against
the current champion (both scored on this run's test window), no new-user segment regression, and the
artifact's size and batch-scoring latency. Their results are recorded with the model version.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cairn import (
    CheckResult,
    Context,
    Files,
    GateContext,
    asset,
    check,
    gate,
    latency_budget,
    metric_threshold,
    no_regression,
    segment_regression,
    size_budget,
)
from pipeline import metrics
from pipeline.training import estimator, scores

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

MODEL_NAME = "home_feed_ranker"


@asset(
    params={
        "min_auc": 0.65,
        "min_ndcg_at_10": 0.3,
        "min_auc_lift_over_popularity": 0.02,
        "min_auc_new_users": 0.55,
        "max_auc_gap_new_users": 0.1,
        "max_ece": 0.03,
        "max_model_mb": 20.0,
    },
    tags={"stage": "gates"},
)
def gates(ctx: Context, evaluation: dict[str, Any], calibration: dict[str, Any], ranker: bytes) -> dict[str, Any]:
    """Each gate with its observed value, threshold and result; critical gates block the model."""
    p = ctx.params
    test, segments = evaluation["test"], evaluation["segments"]
    lift = _minus(test["auc"], evaluation["baseline"]["auc"])
    gap = _minus(segments["returning_users"]["auc"], segments["new_users"]["auc"])
    size_mb = len(ranker) / 2**20
    rows = [
        ("offline_auc", test["auc"], ">=", p["min_auc"], True),
        ("offline_ndcg_at_10", test["ndcg_at_10"], ">=", p["min_ndcg_at_10"], True),
        ("beats_popularity_baseline", lift, ">=", p["min_auc_lift_over_popularity"], True),
        ("new_users_auc", segments["new_users"]["auc"], ">=", p["min_auc_new_users"], True),
        ("calibration_ece", calibration["test"]["ece"], "<=", p["max_ece"], True),
        ("model_size_mb", round(size_mb, 3), "<=", p["max_model_mb"], True),
        ("new_users_auc_gap", gap, "<=", p["max_auc_gap_new_users"], False),
    ]
    results = [
        {
            "gate": name,
            "observed": observed,
            "threshold": f"{op} {threshold}",
            "passed": observed is not None and (observed >= threshold if op == ">=" else observed <= threshold),
            "critical": critical,
        }
        for name, observed, op, threshold, critical in rows
    ]
    passed = {r["gate"]: r["passed"] for r in results}
    ctx.log_metrics({"gates_failed": sum(not ok for ok in passed.values())})
    return {
        "results": results,
        "critical_passed": all(r["passed"] for r in results if r["critical"]),
        "all_passed": all(passed.values()),
    }


@check("gates")
def critical_gates_pass(gates: dict[str, Any]) -> CheckResult:
    """Blocking: a model that fails a critical gate is not packaged."""
    failed = [r for r in gates["results"] if r["critical"] and not r["passed"]]
    return CheckResult(not failed, metrics={"failed": len(failed)}, message=_describe(failed) or "all passed")


@check("gates", blocking=False)
def advisory_gates_pass(gates: dict[str, Any]) -> CheckResult:
    """A warning only: advisory gates inform the human review of the candidate."""
    failed = [r for r in gates["results"] if not r["critical"] and not r["passed"]]
    return CheckResult(not failed, metrics={"failed": len(failed)}, message=_describe(failed) or "all passed")


@asset(kind="model", env=["scikit-learn"], tags={"stage": "register"})
def model(
    ctx: Context,
    ranker: bytes,
    calibration: dict[str, Any],
    evaluation: dict[str, Any],
    gates: dict[str, Any],
    dataset_spec: dict[str, Any],
    split: pd.DataFrame,
) -> Files:
    """The model artifact: model.pkl, model_card.json (with the model's SHA-256) and report.md.

    `split` is read by the promotion gates, which score this model and the champion on its test window.
    """
    import sklearn

    folder = ctx.workdir / MODEL_NAME
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.pkl").write_bytes(ranker)
    trained = estimator(ranker)
    params = trained.get_params()
    card = {
        "model_name": MODEL_NAME,
        "status": "candidate",
        "artifact": {
            "file": "model.pkl",
            "sha256": hashlib.sha256(ranker).hexdigest(),
            "bytes": len(ranker),
            "format": "pickle of a scikit-learn HistGradientBoostingClassifier",
        },
        "features": dataset_spec["features"],
        "serving": "p = sigmoid(a * logit(estimator.predict_proba(X[features])[:, 1]) + b)",
        "platt": {"a": calibration["a"], "b": calibration["b"]},
        "model_type": "HistGradientBoostingClassifier (pointwise click model) + Platt calibration",
        "hyperparameters": {
            name: params[name]
            for name in ("learning_rate", "max_iter", "max_leaf_nodes", "min_samples_leaf", "l2_regularization")
        },
        "trees": int(trained.n_iter_),
        "seeds": {"negative_sampling": dataset_spec["negative_sampling"]["seed"], "model": params["random_state"]},
        "dataset_spec": dataset_spec,
        "built_from": dict(ctx.input_versions),
        "metrics": evaluation,
        "calibration": calibration,
        "gates": gates,
        "scikit_learn": sklearn.__version__,
    }
    (folder / "model_card.json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (folder / "report.md").write_text(report(card), encoding="utf-8")
    ctx.log_metrics(
        {
            "auc": evaluation["test"]["auc"] or 0.0,
            "ndcg_at_10": evaluation["test"]["ndcg_at_10"] or 0.0,
            "ece": calibration["test"]["ece"] or 0.0,
        }
    )
    test, baseline = evaluation["test"], evaluation["baseline"]
    more = {  # for the gates: lifts over the baseline, and "<metric>:<segment>" per user segment
        "auc_lift_over_popularity": _minus(test["auc"], baseline["auc"]),
        "ndcg_at_10_lift_over_popularity": _minus(test["ndcg_at_10"], baseline["ndcg_at_10"]),
        **{f"{m}:{name}": s[m] for name, s in evaluation["segments"].items() for m in ("auc", "ndcg_at_10")},
    }
    ctx.log_metrics({name: value for name, value in more.items() if value is not None})
    ctx.add_metadata(sha256=card["artifact"]["sha256"], gates_passed=gates["all_passed"])
    return Files(folder)


# ---- promotion gates: recorded with every model version; a failed blocking gate blocks its promotion -----------

MIN_LIFT_OVER_POPULARITY = 0.02  # AUC and NDCG@10 on the test window, above the item-popularity baseline
MAX_DROP_VS_CHAMPION = {"auc": 0.005, "ndcg_at_10": 0.01}  # both models scored on this run's test window
MAX_NEW_USERS_AUC_DROP = 0.02
MAX_MODEL_BYTES = 20 * 2**20
SERVING_BATCH_ROWS = 1000
MAX_BATCH_MS = 500.0  # scoring one batch of SERVING_BATCH_ROWS rows (generous: shared CI machines are slow)


class Scorer:
    """A model artifact ready to score rows: its estimator and the features its card lists."""

    def __init__(self, folder: Path) -> None:
        card = json.loads((folder / "model_card.json").read_text(encoding="utf-8"))
        self.features: list[str] = card["features"]
        self.estimator = estimator((folder / "model.pkl").read_bytes())

    def predict(self, rows: pd.DataFrame) -> np.ndarray:
        return scores(self.estimator, rows, self.features)


def scored_on_test_window(folder: Path, ctx: GateContext) -> dict[str, float]:
    """AUC and NDCG@10 of a model artifact on this run's test window, overall and per user segment
    (``auc:new_users``): the candidate and the champion are measured alike, on the same rows."""
    split, target = ctx.inputs["split"], ctx.inputs["dataset_spec"]["target"]
    test = split[split["split"] == "test"].copy()
    test["score"] = Scorer(folder).predict(test)
    test["relevance"] = test["click"] + test["purchase"]
    out: dict[str, float] = {}
    for suffix, rows in (("", test), (":new_users", test[test["user_segment"] == "new"])):
        out["auc" + suffix] = metrics.auc(rows[target].to_numpy(), rows["score"].to_numpy())
        out["ndcg_at_10" + suffix] = metrics.ndcg_at_k(rows, "score", "relevance", 10)
    return out


def serving_batch(ctx: GateContext) -> pd.DataFrame:
    """A batch like the ones the feed scores: the first rows of the test window."""
    split = ctx.inputs["split"]
    return split[split["split"] == "test"].head(SERVING_BATCH_ROWS)


promotion_gates = [
    gate("model")(metric_threshold("auc_lift_over_popularity", min=MIN_LIFT_OVER_POPULARITY)),
    gate("model")(metric_threshold("ndcg_at_10_lift_over_popularity", min=MIN_LIFT_OVER_POPULARITY)),
    gate("model")(no_regression("auc", MAX_DROP_VS_CHAMPION["auc"], evaluate=scored_on_test_window)),
    gate("model")(no_regression("ndcg_at_10", MAX_DROP_VS_CHAMPION["ndcg_at_10"], evaluate=scored_on_test_window)),
    gate("model")(
        segment_regression("auc", MAX_NEW_USERS_AUC_DROP, segments=["new_users"], evaluate=scored_on_test_window)
    ),
    gate("model")(size_budget(MAX_MODEL_BYTES)),
    gate("model")(latency_budget(MAX_BATCH_MS, batch=serving_batch, load=Scorer)),
]


def report(card: dict[str, Any]) -> str:
    """The short human-readable model report."""
    spec, ev, cal = card["dataset_spec"], card["metrics"], card["calibration"]
    sampling, split = spec["negative_sampling"], spec["split"]
    lines = [
        f"# {card['model_name']}: model report",
        "",
        f"Status: {card['status']} (training never promotes; promotion is a separate, reviewed step).",
        "",
        "## Data",
        "",
        f"- examples: {spec['examples']['unit']}, {_day(spec['examples']['start'])} to "
        f"{_day(spec['examples']['end'])} (labels matured {spec['label_maturity_days']} days)",
        f"- target: {spec['target']}; {len(spec['features'])} features, point-in-time joined",
        f"- split (temporal): train until {_day(split['train_end'])}, valid until {_day(split['valid_end'])}, "
        f"test until {_day(split['test_end'])}; rows {ev['train_rows']} / {ev['valid']['rows']} / {ev['test']['rows']}",
        f"- negative sampling: {sampling['policy']}, {sampling['negatives_per_positive']} per positive, "
        f"seed {sampling['seed']}, {sampling['applies_to']} window only",
        "",
        "## Metrics on the test window",
        "",
        "| slice | rows | click rate | AUC | NDCG@10 |",
        "|---|---|---|---|---|",
    ]
    slices = [
        ("all users", ev["test"]),
        ("new users", ev["segments"]["new_users"]),
        ("returning users", ev["segments"]["returning_users"]),
        ("popularity baseline", ev["baseline"]),
    ]
    for name, s in slices:
        lines.append(f"| {name} | {s['rows']} | {s['click_rate']} | {s['auc']} | {s['ndcg_at_10']} |")
    t = cal["test"]
    lines += [
        "",
        f"## Calibration ({cal['method']}, fitted on the validation window)",
        "",
        f"ECE {t['ece_raw']} → {t['ece']}; log loss {t['log_loss_raw']} → {t['log_loss']}; "
        f"mean predicted {t['mean_predicted_raw']} → {t['mean_predicted']} (observed {t['click_rate']})",
        "",
        "## Gates",
        "",
        "| gate | observed | threshold | critical | result |",
        "|---|---|---|---|---|",
    ]
    for g in card["gates"]["results"]:
        verdict = "pass" if g["passed"] else "FAIL"
        lines.append(
            f"| {g['gate']} | {g['observed']} | {g['threshold']} | {'yes' if g['critical'] else 'no'} | {verdict} |"
        )
    art = card["artifact"]
    lines += [
        "",
        "## Artifact",
        "",
        f"{art['file']}: {art['bytes']} bytes, sha256 {art['sha256']}; {card['trees']} trees, "
        f"seeds {card['seeds']}, scikit-learn {card['scikit_learn']}",
        "",
    ]
    return "\n".join(lines)


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 4)


def _describe(failed: list[dict[str, Any]]) -> str:
    return "; ".join(f"{r['gate']} {r['observed']} (needs {r['threshold']})" for r in failed)


def _day(iso: str) -> str:
    return iso[:10]
