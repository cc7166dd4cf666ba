"""ML helpers for feature pipelines: point-in-time joins, temporal splits and leakage checks.

pandas, polars and pyarrow are imported inside the functions that use them (start-up budget).
"""

from __future__ import annotations

from cairn.ml.joins import point_in_time_join
from cairn.ml.leakage import features_before_prediction, labels_after_prediction, windows_ordered_and_disjoint
from cairn.ml.splits import Split, temporal_split

__all__ = [
    "Split",
    "features_before_prediction",
    "labels_after_prediction",
    "point_in_time_join",
    "temporal_split",
    "windows_ordered_and_disjoint",
]
