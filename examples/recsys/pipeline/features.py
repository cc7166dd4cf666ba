"""Stage 3, features: daily activity per user and per item, rolled up over windows of days.

``events`` → ``user_activity`` / ``item_activity`` (one day's counts) → ``user_features`` / ``item_features``
(sums over the last ``window_days`` and ``history_days``, read through ``Window(..., 28)``). A feature row of
day ``D`` describes the activity up to the end of ``D`` and is stamped with that moment (``*_feature_ts``),
so the point-in-time join gives an impression only what was known before it was shown.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cairn import Context, Contract, Fatal, Window, asset, col
from pipeline.simulation import N_CATEGORIES
from pipeline.timeline import DAYS, MAX_FEATURE_DAYS, day_start

if TYPE_CHECKING:
    import pandas as pd

PRIOR_CTR = 0.08  # smoothing: a click-through rate starts at the prior and moves with evidence
PRIOR_WEIGHT = 20.0
PRIOR_BUY_RATE = 0.15
COUNTS = ("impression", "click", "purchase")


@asset(partitions=DAYS, tags={"stage": "features"})
def user_activity(events: pd.DataFrame) -> pd.DataFrame:
    """One day's impressions, clicks and purchases per user and item category, and the user's last click."""
    counts = _counts(events, ["user_id", "category"])
    clicks = events[events["event_type"] == "click"]
    last = clicks.groupby(["user_id", "category"], as_index=False)["ts"].max().rename(columns={"ts": "last_click_ts"})
    return counts.merge(last, on=["user_id", "category"], how="left")


@asset(partitions=DAYS, tags={"stage": "features"})
def item_activity(events: pd.DataFrame) -> pd.DataFrame:
    """One day's impressions, clicks and purchases per item."""
    return _counts(events, ["item_id"])


@asset(
    partitions=DAYS,
    params={"window_days": 7, "history_days": 28},
    ins={"activity": Window("user_activity", MAX_FEATURE_DAYS)},
    tags={"stage": "features"},
    contract=Contract(
        columns={"user_id": col("int64", nullable=False), "u_ctr_w": col("float64", min=0, max=1)}, unique=["user_id"]
    ),
)
def user_features(ctx: Context, activity: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per user at the end of the day: recent and long-run activity, per category too.

    Click-through rates are smoothed towards a prior; ``u_hours_since_click`` is a recency signal.
    """
    import numpy as np
    import pandas as pd

    window, history = _windows(ctx, "window_days", "history_days")
    assert ctx.partition_window is not None
    stamp = ctx.partition_window[1]
    days = _stacked(activity, ctx.partition)
    hist = days[days["age"] < history]
    recent = hist[hist["age"] < window]
    by_user = hist.groupby("user_id")
    out = pd.DataFrame(
        {
            "u_clicks_h": by_user["clicks"].sum(),
            "u_purchases_h": by_user["purchases"].sum(),
            "u_hours_since_click": (pd.Timestamp(stamp) - by_user["last_click_ts"].max()).dt.total_seconds() / 3600,
        }
    )
    short = recent.groupby("user_id")
    out["u_impressions_w"] = short["impressions"].sum()
    out["u_clicks_w"] = short["clicks"].sum()
    out["u_active_days_w"] = short["age"].nunique()
    out = out.fillna({"u_impressions_w": 0, "u_clicks_w": 0, "u_active_days_w": 0})
    out["u_ctr_w"] = _smoothed(out["u_clicks_w"], out["u_impressions_w"], PRIOR_CTR)
    per_category = recent.pivot_table(
        index="user_id", columns="category", values=["impressions", "clicks"], aggfunc="sum", fill_value=0
    )
    long_run = hist.pivot_table(index="user_id", columns="category", values="clicks", aggfunc="sum", fill_value=0)
    for k in range(N_CATEGORIES):
        shown = per_category.get(("impressions", k), pd.Series(dtype="float64")).reindex(out.index, fill_value=0)
        clicked = per_category.get(("clicks", k), pd.Series(dtype="float64")).reindex(out.index, fill_value=0)
        out[f"cat_clicks_w_{k}"] = clicked.astype("float64")
        out[f"cat_ctr_w_{k}"] = (clicked + PRIOR_WEIGHT * out["u_ctr_w"]) / (shown + PRIOR_WEIGHT)
        share = long_run.get(k, pd.Series(dtype="float64")).reindex(out.index, fill_value=0)
        out[f"cat_share_h_{k}"] = np.where(out["u_clicks_h"] > 0, share / out["u_clicks_h"].clip(lower=1), np.nan)
    out.insert(0, "user_feature_ts", pd.Timestamp(stamp).tz_convert("UTC"))
    ctx.log_metric("users", float(len(out)))
    return _finished(out.reset_index(), "user_id", "user_feature_ts")


@asset(
    partitions=DAYS,
    params={"window_days": 7},
    ins={"activity": Window("item_activity", MAX_FEATURE_DAYS)},
    tags={"stage": "features"},
    contract=Contract(
        columns={"item_id": col("int64", nullable=False), "i_ctr_w": col("float64", min=0, max=1)}, unique=["item_id"]
    ),
)
def item_features(ctx: Context, activity: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per item at the end of the day: exposure, click-through and purchase rates (popularity signals)."""
    import pandas as pd

    (window,) = _windows(ctx, "window_days")
    assert ctx.partition_window is not None
    stamp = ctx.partition_window[1]
    days = _stacked(activity, ctx.partition)
    recent = days[days["age"] < window].groupby("item_id")[["impressions", "clicks", "purchases"]].sum()
    today = days[days["age"] == 0].set_index("item_id")
    out = pd.DataFrame(
        {
            "i_impressions_w": recent["impressions"].astype("float64"),
            "i_ctr_w": _smoothed(recent["clicks"], recent["impressions"], PRIOR_CTR),
            "i_buy_rate_w": _smoothed(recent["purchases"], recent["clicks"], PRIOR_BUY_RATE, weight=5.0),
        }
    )
    out["i_ctr_1d"] = _smoothed(
        today["clicks"].reindex(out.index, fill_value=0),
        today["impressions"].reindex(out.index, fill_value=0),
        PRIOR_CTR,
    )
    out.insert(0, "item_feature_ts", pd.Timestamp(stamp).tz_convert("UTC"))
    ctx.log_metric("items", float(len(out)))
    return _finished(out.reset_index(), "item_id", "item_feature_ts")


def _counts(events: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Events per key and type, as columns impressions, clicks, purchases (zero when none)."""
    table = events.pivot_table(index=keys, columns="event_type", values="event_id", aggfunc="count", fill_value=0)
    table = table.reindex(columns=list(COUNTS), fill_value=0).astype("int64")
    table.columns = [f"{kind}s" for kind in COUNTS]
    return table.reset_index()


def _stacked(activity: dict[str, pd.DataFrame], partition: str | None) -> pd.DataFrame:
    """The window's daily tables as one, with each row's age in days (0: the partition's own day)."""
    import pandas as pd

    assert partition is not None
    today = day_start(partition)
    frames = [frame.assign(age=(today - day_start(key)).days) for key, frame in sorted(activity.items())]
    return pd.concat(frames, ignore_index=True)


def _windows(ctx: Context, *names: str) -> list[int]:
    values = [ctx.params[name] for name in names]
    for name, value in zip(names, values, strict=True):
        if not isinstance(value, int) or not 1 <= value <= MAX_FEATURE_DAYS:
            raise Fatal(
                f"{ctx.asset}: {name}={value!r} must be a whole number of days from 1 to {MAX_FEATURE_DAYS} "
                f"(the asset reads the last {MAX_FEATURE_DAYS} days; raise MAX_FEATURE_DAYS in "
                "pipeline/timeline.py for longer windows)"
            )
    if values != sorted(values):
        raise Fatal(f"{ctx.asset}: {' <= '.join(names)} must hold, got {values}")
    return values


def _smoothed(hits: pd.Series, trials: pd.Series, prior: float, weight: float = PRIOR_WEIGHT) -> pd.Series:
    """A rate pulled towards `prior` when there is little evidence (an additive, Beta-style prior)."""
    return (hits + weight * prior) / (trials + weight)


def _finished(frame: pd.DataFrame, key: str, stamp: str) -> pd.DataFrame:
    """Sorted by key, with floats as float64: the same rows always give the same bytes."""
    frame = frame.sort_values(key, kind="stable").reset_index(drop=True)
    floats = [c for c in frame.columns if c not in (key, stamp)]
    frame[floats] = frame[floats].astype("float64")
    return frame
