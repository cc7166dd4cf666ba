"""Aggregation tier: rolling per-account features over the last days, and the published feature table.

``account_features@D`` reads the enriched payments of the `WINDOW` days up to D, so a late or corrected day
makes exactly the windows that cover it stale. ``window_days`` narrows the window without changing the
graph (an experiment: ``cairn run --set account_features.window_days=3``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cairn import AllPartitions, Context, Contract, Fatal, Window, asset, col
from tiers import DAYS

if TYPE_CHECKING:
    import pandas as pd

WINDOW = 7


@asset(
    partitions=DAYS,
    params={"window_days": 7},
    ins={"days": Window("enriched_transactions", WINDOW)},
    contract=Contract(
        columns={
            "as_of": col("string", nullable=False),
            "account_id": col("int64", nullable=False),
            "txn_count": col("int64", nullable=False, min=1),
            "active_days": col("int64", nullable=False, min=1, max=WINDOW),
            "spend_usd": col("float64", nullable=False, min=0),
            "mean_amount_usd": col("float64", nullable=False, min=0),
            "max_amount_usd": col("float64", nullable=False, min=0),
            "night_share": col("float64", nullable=False, min=0, max=1),
            "weekend_share": col("float64", nullable=False, min=0, max=1),
            "cross_currency_share": col("float64", min=0, max=1),
            "mean_amount_to_limit": col("float64", min=0),
            "categories": col("int64", nullable=False, min=1),
            "segment": col("string"),
            "credit_limit": col("float64", min=0),
        },
        unique=["account_id"],
        rows=(1, None),
    ),
    tags={"tier": "aggregation"},
)
def account_features(ctx: Context, days: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per account, what its payments of the last `window_days` days say (spend, timing, currencies)."""
    import pandas as pd

    window_days = ctx.params["window_days"]
    if not isinstance(window_days, int) or not 1 <= window_days <= WINDOW:
        raise Fatal(
            f"account_features: window_days={window_days!r} must be a whole number of days from 1 to {WINDOW} "
            f"(the input window holds {WINDOW} days; raise WINDOW in tiers/aggregation.py for longer windows)"
        )
    recent = sorted(days)[-window_days:]
    payments = pd.concat([days[day].assign(day=day) for day in recent], ignore_index=True)
    by_account = payments.sort_values(["ts", "txn_id"]).groupby("account_id", sort=True)
    features = by_account.agg(
        txn_count=("txn_id", "size"),
        active_days=("day", "nunique"),
        spend_usd=("amount_usd", "sum"),
        mean_amount_usd=("amount_usd", "mean"),
        max_amount_usd=("amount_usd", "max"),
        night_share=("is_night", "mean"),
        weekend_share=("is_weekend", "mean"),
        cross_currency_share=("is_cross_currency", "mean"),
        mean_amount_to_limit=("amount_to_limit", "mean"),
        categories=("merchant_category", "nunique"),
        segment=("segment", "last"),  # the latest known values (last skips nulls)
        credit_limit=("credit_limit", "last"),
    )
    features = features.round(6).astype({"txn_count": "int64", "active_days": "int64", "categories": "int64"})
    ctx.log_metric("accounts", len(features))
    features = features.reset_index()
    features.insert(0, "as_of", ctx.partition)
    return features


@asset(
    ins={"days": AllPartitions("account_features")},
    contract=Contract(unique=["as_of", "account_id"], rows=(1, None)),
    tags={"tier": "aggregation"},
)
def feature_table(days: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Every day's account features in one table: what a training job or a feature store reads."""
    import pandas as pd

    return pd.concat([days[day] for day in sorted(days)], ignore_index=True)
