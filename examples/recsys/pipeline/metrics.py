"""Metric definitions used by evaluation, calibration and the gates (version them like any other code:
a change here changes the code version of every asset that computes a metric, so cairn reruns them).

- AUC: scikit-learn's ``roc_auc_score``; ``nan`` when a slice has only one class.
- NDCG@k per session: items ranked by score (ties broken by impression id), gain ``2**relevance - 1``,
  discount ``log2(rank + 1)``, averaged over sessions with at least one relevant item.
- ECE: expected calibration error over 10 equal-width probability bins, weighted by the rows in each bin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

METRIC_DEFINITIONS_VERSION = "v1"


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    import numpy as np
    from sklearn.metrics import roc_auc_score

    if len(np.unique(labels)) < 2:
        return float("nan")
    return float(roc_auc_score(labels, scores))


def ndcg_at_k(frame: pd.DataFrame, score: str, relevance: str, k: int = 10) -> float:
    """Mean NDCG@k over the sessions of `frame` (columns session_id, impression_id, `score`, `relevance`)."""
    import numpy as np

    ranked = frame.sort_values(["session_id", score, "impression_id"], ascending=[True, False, True], kind="stable")
    rank = ranked.groupby("session_id").cumcount().to_numpy() + 1
    gain = 2.0 ** ranked[relevance].to_numpy() - 1
    top = rank <= k
    dcg = ranked.assign(d=np.where(top, gain / np.log2(rank + 1), 0.0)).groupby("session_id")["d"].sum()
    ideal = ranked.sort_values(["session_id", relevance], ascending=[True, False], kind="stable")
    ideal_rank = ideal.groupby("session_id").cumcount().to_numpy() + 1
    ideal_gain = 2.0 ** ideal[relevance].to_numpy() - 1
    idcg = (
        ideal.assign(d=np.where(ideal_rank <= k, ideal_gain / np.log2(ideal_rank + 1), 0.0))
        .groupby("session_id")["d"]
        .sum()
    )
    relevant = idcg > 0
    if not relevant.any():
        return float("nan")
    return float((dcg[relevant] / idcg[relevant]).mean())


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> float:
    import numpy as np

    which = np.minimum((probabilities * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.mean() * abs(probabilities[inside].mean() - labels[inside].mean())
    return float(total)


def log_loss(labels: np.ndarray, probabilities: np.ndarray) -> float:
    import numpy as np

    p = np.clip(probabilities, 1e-7, 1 - 1e-7)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))


def rounded(value: float, digits: int = 4) -> float | None:
    """A metric for JSON: rounded, and None for nan (JSON has no nan)."""
    return None if value != value else round(float(value), digits)
