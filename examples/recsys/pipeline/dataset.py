"""Stage 4, the training data: a dataset spec, the materialized dataset, and its temporal split.

``dataset_spec`` is the source of truth (time range, target, features, point-in-time rules, negative
sampling policy and seed, split boundaries); ``training_dataset`` builds exactly that from the labels and
the daily features with point-in-time joins and seeded negative sampling, and records the spec together
with the data version of every partition it read; ``split`` cuts it into train, validation and test windows.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from cairn import AllPartitions, CheckResult, Context, Contract, Fatal, asset, check, col
from cairn.ml import features_before_prediction, labels_after_prediction, windows_ordered_and_disjoint
from pipeline.simulation import DEVICES, N_CATEGORIES, REGIONS
from pipeline.timeline import PURCHASE_WINDOW_DAYS, days_after, end_moment, first_moment

if TYPE_CHECKING:
    import pandas as pd

USER_FEATURES = [
    "u_impressions_w",
    "u_clicks_w",
    "u_ctr_w",
    "u_active_days_w",
    "u_clicks_h",
    "u_purchases_h",
    "u_hours_since_click",
    "user_age_days",
]
USER_CATEGORY_FEATURES = ["uc_ctr_w", "uc_clicks_w", "uc_share_h"]
ITEM_FEATURES = ["i_impressions_w", "i_ctr_w", "i_buy_rate_w", "i_ctr_1d", "price"]
CONTEXT_FEATURES = ["category", "hour", "weekend", "region_code", "device_code"]
FEATURES = USER_FEATURES + USER_CATEGORY_FEATURES + ITEM_FEATURES + CONTEXT_FEATURES
CATEGORICAL = ["category", "region_code", "device_code"]
NEW_USER_DAYS = 7  # a user who signed up less than this many days before the impression is "new"
FEATURE_MAX_AGE = timedelta(days=1)  # only yesterday's feature row counts: older rows describe old windows
SPLITS = ("train", "valid", "test")


@asset(
    params={
        "warmup_days": 14,
        "valid_days": 4,
        "test_days": 4,
        "negatives_per_positive": 4,
        "sampling_seed": 2026,
    },
    tags={"stage": "dataset"},
)
def dataset_spec(ctx: Context) -> dict[str, Any]:
    """What the training dataset is: examples, target, features, point-in-time rules, sampling, split."""
    p = ctx.params
    start = days_after(first_moment(), p["warmup_days"])
    end = days_after(end_moment(), -PURCHASE_WINDOW_DAYS)  # later impressions have no mature labels yet
    test_start = days_after(end, -p["test_days"])
    valid_start = days_after(test_start, -p["valid_days"])
    if not start < valid_start:
        raise Fatal(
            f"dataset_spec: warmup_days={p['warmup_days']}, valid_days={p['valid_days']} and test_days="
            f"{p['test_days']} leave no training window in {start:%F} … {end:%F}; make them shorter"
        )
    if not (isinstance(p["negatives_per_positive"], int | float) and p["negatives_per_positive"] > 0):
        raise Fatal(
            f"dataset_spec: negatives_per_positive must be a positive number, got {p['negatives_per_positive']!r}"
        )
    return {
        "name": "home_feed_ranker",
        "examples": {
            "source": "labels",
            "unit": "an impression in the home feed",
            "prediction_time": "impression_ts",
            "start": start.isoformat(),
            "end": end.isoformat(),
        },
        "target": "click",
        "relevance": "click + purchase (graded, for NDCG)",
        "label_maturity_days": PURCHASE_WINDOW_DAYS,
        "features": FEATURES,
        "categorical": CATEGORICAL,
        "point_in_time": {
            "user_features": "user_feature_ts",
            "item_features": "item_feature_ts",
            "max_age_hours": FEATURE_MAX_AGE.total_seconds() / 3600,
        },
        "negative_sampling": {
            "policy": "exposed_no_click",
            "applies_to": "train",
            "negatives_per_positive": p["negatives_per_positive"],
            "seed": p["sampling_seed"],
        },
        "split": {
            "type": "temporal",
            "train_end": valid_start.isoformat(),
            "valid_end": test_start.isoformat(),
            "test_end": end.isoformat(),
        },
    }


@asset(
    ins={
        "labels": AllPartitions("labels"),
        "user_features": AllPartitions("user_features"),
        "item_features": AllPartitions("item_features"),
    },
    tags={"stage": "dataset"},
    contract=Contract(
        columns={
            "impression_id": col("int64", nullable=False),
            "click": col("int64", allowed=[0, 1], nullable=False),
            "i_ctr_w": col("float64", max_null_rate=0.05),
            "weight": col("float64", min=1.0),
        },
        unique=["impression_id"],
        rows=(100, None),
    ),
)
def training_dataset(
    ctx: Context,
    dataset_spec: dict[str, Any],
    labels: dict[str, pd.DataFrame],
    user_features: dict[str, pd.DataFrame],
    item_features: dict[str, pd.DataFrame],
    users: pd.DataFrame,
    items: pd.DataFrame,
) -> pd.DataFrame:
    """The examples of the spec's window with point-in-time features and seeded negative sampling."""
    import numpy as np
    import pandas as pd

    from cairn.ml import point_in_time_join

    spec = dataset_spec
    examples = pd.concat(list(labels.values()), ignore_index=True)
    start, end = pd.Timestamp(spec["examples"]["start"]), pd.Timestamp(spec["examples"]["end"])
    examples = examples[(examples["impression_ts"] >= start) & (examples["impression_ts"] < end)]
    examples = examples.sort_values("impression_id", kind="stable").reset_index(drop=True)
    examples = examples.merge(items[["item_id", "price"]], on="item_id", how="left", validate="many_to_one")
    examples = examples.merge(
        users[["user_id", "signup_ts", "region", "device"]], on="user_id", how="left", validate="many_to_one"
    )
    rows = point_in_time_join(
        examples,
        pd.concat(list(user_features.values()), ignore_index=True),
        on="user_id",
        example_time="impression_ts",
        feature_time="user_feature_ts",
        max_age=FEATURE_MAX_AGE,
    )
    rows = point_in_time_join(
        rows,
        pd.concat(list(item_features.values()), ignore_index=True),
        on="item_id",
        example_time="impression_ts",
        feature_time="item_feature_ts",
        max_age=FEATURE_MAX_AGE,
    )
    rows = _derived(rows)

    sampling = spec["negative_sampling"]
    in_train = (rows["impression_ts"] < pd.Timestamp(spec["split"]["train_end"])).to_numpy()
    positive = (rows[spec["target"]] == 1).to_numpy()
    negatives = int((in_train & ~positive).sum())
    rate = min(1.0, sampling["negatives_per_positive"] * int((in_train & positive).sum()) / max(negatives, 1))
    draw = np.random.default_rng(sampling["seed"]).random(len(rows))
    keep = ~in_train | positive | (draw < rate)
    rows["weight"] = np.where(in_train & ~positive, 1.0 / max(rate, 1e-12), 1.0)
    out = rows.loc[keep, _COLUMNS].reset_index(drop=True)

    ctx.add_metadata(
        dataset_spec={
            **spec,
            "pinned_inputs": dict(ctx.input_versions),
            "sampling_outcome": {"train_negative_keep_rate": round(rate, 6), "rows": len(out)},
        }
    )
    ctx.log_metrics({"rows": len(out), "click_rate": out["click"].mean(), "negative_keep_rate": rate})
    return out


_IDS = ["impression_id", "session_id", "user_id", "item_id", "position", "user_segment"]
_TIMES = ["impression_ts", "user_feature_ts", "item_feature_ts", "click_ts", "purchase_ts", "label_cutoff"]
_COLUMNS = [*_IDS, *_TIMES, "click", "purchase", "weight", *[f for f in FEATURES if f not in _IDS]]


def _derived(rows: pd.DataFrame) -> pd.DataFrame:
    """Features computed from the joined columns: the user's affinity to this item's category, user age,
    time of day, and integer codes of the categorical attributes."""
    import numpy as np

    pick = np.arange(len(rows)), rows["category"].to_numpy()
    for name, wide in (("uc_ctr_w", "cat_ctr_w_"), ("uc_clicks_w", "cat_clicks_w_"), ("uc_share_h", "cat_share_h_")):
        rows[name] = rows[[f"{wide}{k}" for k in range(N_CATEGORIES)]].to_numpy()[pick]
    age = (rows["impression_ts"] - rows["signup_ts"]).dt.total_seconds() / 86_400
    rows["user_age_days"] = age
    rows["user_segment"] = np.where(age < NEW_USER_DAYS, "new", "returning")
    rows["hour"] = rows["impression_ts"].dt.hour.astype("int64")
    rows["weekend"] = (rows["impression_ts"].dt.dayofweek >= 5).astype("int64")
    rows["region_code"] = rows["region"].map({name: i for i, name in enumerate(REGIONS)}).astype("int64")
    rows["device_code"] = rows["device"].map({name: i for i, name in enumerate(DEVICES)}).astype("int64")
    return rows


@check("training_dataset")
def no_feature_from_the_future(training_dataset: pd.DataFrame) -> CheckResult:
    """Leakage: every feature row was stamped at or before the impression it describes."""
    return features_before_prediction(training_dataset, ["user_feature_ts", "item_feature_ts"], "impression_ts")


@check("training_dataset")
def labels_come_later(training_dataset: pd.DataFrame) -> CheckResult:
    """Leakage: a label's event happened after the impression."""
    return labels_after_prediction(training_dataset, "click_ts", "impression_ts")


@check("training_dataset")
def click_rate_is_plausible(training_dataset: pd.DataFrame) -> CheckResult:
    """Dataset quality: the share of positives is in a believable range (not empty, not all clicks)."""
    rate = float(training_dataset["click"].mean())
    return CheckResult(0.005 <= rate <= 0.6, metrics={"click_rate": rate}, message=f"click rate {rate:.3f}")


@asset(tags={"stage": "dataset"})
def split(ctx: Context, training_dataset: pd.DataFrame, dataset_spec: dict[str, Any]) -> pd.DataFrame:
    """The dataset with a ``split`` column: train, valid or test, cut by time at the spec's boundaries."""
    import pandas as pd

    from cairn.ml import temporal_split

    bounds = dataset_spec["split"]
    cut = temporal_split(
        training_dataset,
        "impression_ts",
        train_end=bounds["train_end"],
        valid_end=bounds["valid_end"],
        test_end=bounds["test_end"],
    )
    parts = {"train": cut.train, "valid": cut.valid, "test": cut.test}
    for name, part in parts.items():
        if part["click"].sum() == 0:
            raise Fatal(f"split: the {name} window has no clicks; raise the world's scale or widen the window")
    ctx.add_metadata(**cut.boundaries, rows={name: len(part) for name, part in parts.items()})
    ctx.log_metrics({f"rows_{name}": len(part) for name, part in parts.items()})
    return pd.concat([part.assign(split=name) for name, part in parts.items()], ignore_index=True)


@check("split")
def windows_in_order(split: pd.DataFrame) -> CheckResult:
    """Train, validation and test windows follow each other without overlap."""
    windows = {name: split[split["split"] == name] for name in SPLITS}
    return windows_ordered_and_disjoint(windows, time_column="impression_ts")
