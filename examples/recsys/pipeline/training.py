"""Stages 5 to 7: train a gradient-boosted click model, evaluate it globally and per segment, calibrate it.

``ranker`` (scikit-learn's HistGradientBoostingClassifier on the train window, seeded; stored as the pickle
bytes written right after training, so that the model artifact is byte-for-byte what was trained, and
read back only after cairn has verified their checksum) → ``evaluation``
(AUC and NDCG@10 on the test window, for all users, new users and returning users, against a popularity
baseline) and ``calibration`` (Platt scaling fitted on the validation window, measured on the test window).
"""

from __future__ import annotations

import pickle
from typing import TYPE_CHECKING, Any

from cairn import Context, asset
from pipeline import metrics
from pipeline.features import PRIOR_CTR

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingClassifier


CHECKPOINT_EVERY = 25  # boosting iterations between two checkpoints of the ranker's fit


@asset(
    params={
        "learning_rate": 0.08,
        "max_iter": 150,
        "max_leaf_nodes": 31,
        "min_samples_leaf": 40,
        "l2_regularization": 1.0,
        "seed": 17,
    },
    env=["scikit-learn"],
    tags={"stage": "train"},
)
def ranker(ctx: Context, split: pd.DataFrame, dataset_spec: dict[str, Any]) -> bytes:
    """A gradient-boosted click model fitted on the train window, as pickle bytes.

    No early stopping and one thread, so the fit depends only on the data, the params and the seed. The fit
    grows `CHECKPOINT_EVERY` trees at a time (``warm_start``) and saves itself with ``ctx.checkpoint`` after
    each batch: an attempt that dies (a killed worker, a lost machine) is resumed by its retry, or by the next
    `cairn run`, from the last checkpoint instead of from the first tree, and gives the same model bytes.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    features, target = dataset_spec["features"], dataset_spec["target"]
    train = split[split["split"] == "train"]
    p = ctx.params
    model = HistGradientBoostingClassifier(
        learning_rate=p["learning_rate"],
        max_iter=p["max_iter"],
        max_leaf_nodes=p["max_leaf_nodes"],
        min_samples_leaf=p["min_samples_leaf"],
        l2_regularization=p["l2_regularization"],
        categorical_features=[features.index(name) for name in dataset_spec["categorical"]],
        early_stopping=False,
        random_state=p["seed"],
        warm_start=True,  # each fit() adds trees up to max_iter to those already grown
    )
    grown = 0
    saved = ctx.checkpoint.load(None)  # {"trees": n, "model": the estimator after n trees}, from an attempt that died
    if saved is not None:
        grown, model = saved["trees"], saved["model"]
        ctx.log.info("resuming the fit from its checkpoint: %d of %d trees grown", grown, p["max_iter"])
    with threadpool_limits(limits=1):  # one core per step (cairn runs steps side by side) and a reproducible sum order
        while grown < p["max_iter"]:
            grown = min(grown + CHECKPOINT_EVERY, p["max_iter"])
            model.set_params(max_iter=grown)
            model.fit(train[features], train[target])
            if grown < p["max_iter"]:
                ctx.checkpoint.save({"trees": grown, "model": model})
                # Go on from what was saved, as a resumed attempt does: both then pickle the same object graph.
                model = ctx.checkpoint.load()["model"]
    model.set_params(warm_start=False)
    valid = split[split["split"] == "valid"]
    ctx.log_metrics(
        {
            "train_rows": len(train),
            "train_auc": round(metrics.auc(train[target].to_numpy(), scores(model, train, features)), 4),
            # what a sweep chooses by (`--metric valid_auc`); the test window stays held out for `evaluation`
            "valid_auc": round(metrics.auc(valid[target].to_numpy(), scores(model, valid, features)), 4),
        }
    )
    return model_bytes(model)


_STRINGS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"})


def model_bytes(model: HistGradientBoostingClassifier) -> bytes:
    """The model's pickle, with every string written out where it occurs.

    Pickle writes an object once and refers back to it where the same object recurs. Which equal strings are
    one object depends on the process's history (an attribute name is the one of the first instance of its
    class: in a resumed attempt, the one unpickled from the checkpoint), so the plain pickle of the same model
    could differ between an uninterrupted fit and a resumed one; this one does not.
    """
    import pickletools

    data = pickle.dumps(model, protocol=5)
    ops = list(pickletools.genops(data))
    ends = [pos for _, _, pos in ops[1:]] + [len(data)]
    strings: dict[int, bytes] = {}  # memo index -> the opcode that pushed that string
    out, memo, last = bytearray(), 0, b""
    for (op, arg, pos), end in zip(ops, ends, strict=True):
        raw = data[pos:end]
        if op.name == "MEMOIZE":
            if last:
                strings[memo] = last
            memo += 1
        elif "GET" in op.name and arg in strings:
            raw = strings[arg]
        out += raw
        last = raw if op.name in _STRINGS else b""
    return pickletools.optimize(bytes(out))  # drops the memo entries nothing refers to any more, re-frames


def estimator(blob: bytes) -> HistGradientBoostingClassifier:
    """The trained estimator from the ranker's bytes (cairn checked their checksum when it loaded them)."""
    model: HistGradientBoostingClassifier = pickle.loads(blob)
    return model


def scores(model: HistGradientBoostingClassifier, frame: pd.DataFrame, features: list[str]) -> np.ndarray:
    """The model's raw click probability for each row."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return np.asarray(model.predict_proba(frame[features])[:, 1])


@asset(tags={"stage": "evaluate"})
def evaluation(ctx: Context, ranker: bytes, split: pd.DataFrame, dataset_spec: dict[str, Any]) -> dict[str, Any]:
    """AUC and NDCG@10 on the held-out windows, per user segment, beside a popularity baseline."""
    features, target = dataset_spec["features"], dataset_spec["target"]
    held_out = split[split["split"] != "train"].copy()
    held_out["score"] = scores(estimator(ranker), held_out, features)
    held_out["popularity"] = held_out["i_ctr_w"].fillna(PRIOR_CTR)
    held_out["relevance"] = held_out["click"] + held_out["purchase"]
    valid, test = held_out[held_out["split"] == "valid"], held_out[held_out["split"] == "test"]

    def summary(frame: pd.DataFrame, score: str = "score") -> dict[str, Any]:
        return {
            "rows": len(frame),
            "click_rate": metrics.rounded(frame[target].mean()),
            "auc": metrics.rounded(metrics.auc(frame[target].to_numpy(), frame[score].to_numpy())),
            "ndcg_at_10": metrics.rounded(metrics.ndcg_at_k(frame, score, "relevance", 10)),
        }

    result = {
        "metric_definitions": metrics.METRIC_DEFINITIONS_VERSION,
        "train_rows": int((split["split"] == "train").sum()),
        "valid": summary(valid),
        "test": summary(test),
        "segments": {
            "new_users": summary(test[test["user_segment"] == "new"]),
            "returning_users": summary(test[test["user_segment"] == "returning"]),
        },
        "baseline": {"name": "item popularity (i_ctr_w)", **summary(test, "popularity")},
    }
    ctx.log_metrics(
        {
            name: value
            for name, value in {
                "auc": result["test"]["auc"],
                "ndcg_at_10": result["test"]["ndcg_at_10"],
                "auc_new_users": result["segments"]["new_users"]["auc"],
                "auc_returning_users": result["segments"]["returning_users"]["auc"],
                "baseline_auc": result["baseline"]["auc"],
            }.items()
            if value is not None
        }
    )
    return result


@asset(tags={"stage": "calibrate"})
def calibration(ctx: Context, ranker: bytes, split: pd.DataFrame, dataset_spec: dict[str, Any]) -> dict[str, Any]:
    """Platt scaling of the raw scores, fitted on the validation window, measured on the test window.

    Negatives were sampled in training, so the raw scores overstate the click rate.
    """
    import numpy as np

    features, target = dataset_spec["features"], dataset_spec["target"]
    valid, test = split[split["split"] == "valid"], split[split["split"] == "test"]
    model = estimator(ranker)
    a, b = platt(_logit(scores(model, valid, features)), valid[target].to_numpy())
    raw = scores(model, test, features)
    calibrated = 1 / (1 + np.exp(-(a * _logit(raw) + b)))
    y = test[target].to_numpy()
    result = {
        "method": "platt",
        "a": round(a, 6),
        "b": round(b, 6),
        "fitted_on": {
            "window": [dataset_spec["split"]["train_end"], dataset_spec["split"]["valid_end"]],
            "rows": len(valid),
        },
        "test": {
            "click_rate": metrics.rounded(y.mean()),
            "mean_predicted_raw": metrics.rounded(raw.mean()),
            "mean_predicted": metrics.rounded(calibrated.mean()),
            "ece_raw": metrics.rounded(metrics.expected_calibration_error(y, raw)),
            "ece": metrics.rounded(metrics.expected_calibration_error(y, calibrated)),
            "log_loss_raw": metrics.rounded(metrics.log_loss(y, raw)),
            "log_loss": metrics.rounded(metrics.log_loss(y, calibrated)),
        },
    }
    ctx.log_metrics({"ece_raw": result["test"]["ece_raw"], "ece": result["test"]["ece"]})
    return result


def platt(z: np.ndarray, y: np.ndarray, iterations: int = 100) -> tuple[float, float]:
    """Fit ``P(y=1) = sigmoid(a * z + b)`` by Newton's method (a two-parameter logistic regression)."""
    import numpy as np

    design = np.column_stack([z, np.ones_like(z)])
    w = np.array([1.0, 0.0])
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-(design @ w)))
        gradient = design.T @ (p - y)
        hessian = design.T @ (design * (p * (1 - p))[:, None]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return float(w[0]), float(w[1])


def _logit(p: np.ndarray) -> np.ndarray:
    import numpy as np

    q = np.clip(p, 1e-7, 1 - 1e-7)
    return np.asarray(np.log(q / (1 - q)))
