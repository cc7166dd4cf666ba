"""Transformation tier: cross-domain rows, each payment joined with the account as the CRM knew it then.

The two sources arrive at different times: a day's payments land just after midnight, the CRM snapshot
(taken at 18:00) the next morning. A payment is joined point-in-time with the latest snapshot taken at or
before it, never a later one: so a day needs the snapshots of the day before and of the day itself
(``Window("clean_accounts", 2)``), and waits until both have landed. Before the first snapshot of the
calendar there is nothing to join: such payments keep null account columns and ``account_known`` false.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from cairn import CheckResult, Context, Contract, Window, asset, check, col
from cairn.ml import features_before_prediction, point_in_time_join
from tiers import DAYS

if TYPE_CHECKING:
    import pandas as pd

FX_TO_USD = {"USD": 1.0, "EUR": 1.08, "GBP": 1.27}
HOME_CURRENCY = {"US": "USD", "GB": "GBP", "DE": "EUR", "FR": "EUR"}
NIGHT_HOURS = (0, 1, 2, 3, 4, 5)
MAX_SHARE_ABOVE_LIMIT = 0.01
ACCOUNT_COLUMNS = ["account_id", "segment", "country", "credit_limit", "opened_at", "snapshot_ts"]


@asset(
    partitions=DAYS,
    params={"snapshot_max_age_hours": 48},
    ins={"transactions": "clean_transactions", "accounts": Window("clean_accounts", 2)},
    requires={
        "transactions": {"txn_id": "int64", "account_id": "int64", "ts": "timestamp", "amount": "float64"},
        "accounts": {"account_id": "int64", "credit_limit": "float64", "snapshot_ts": "timestamp"},
    },
    contract=Contract(
        columns={
            "txn_id": col("int64", nullable=False),
            "account_id": col("int64", nullable=False),
            "ts": col("timestamp", nullable=False),
            "amount_usd": col("float64", nullable=False, min=0),
            "hour": col("int64", nullable=False, min=0, max=23),
            "is_night": col("bool", nullable=False),
            "is_weekend": col("bool", nullable=False),
            "account_known": col("bool", nullable=False),
            "snapshot_ts": col("timestamp"),
            "segment": col("string"),
            "credit_limit": col("float64", min=0),
            "account_age_days": col("float64", min=0),
            "is_cross_currency": col("bool"),
            "amount_to_limit": col("float64", min=0),
        },
        unique=["txn_id"],
        rows=(1, None),
    ),
    tags={"tier": "transformation", "domain": "payments+crm"},
)
def enriched_transactions(ctx: Context, transactions: pd.DataFrame, accounts: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Payments with derived columns and the account attributes known at payment time."""
    import pandas as pd

    snapshots = pd.concat([accounts[day][ACCOUNT_COLUMNS] for day in sorted(accounts)], ignore_index=True)
    joined = point_in_time_join(
        transactions,
        snapshots,
        on="account_id",
        example_time="ts",
        feature_time="snapshot_ts",
        max_age=timedelta(hours=ctx.params["snapshot_max_age_hours"]),
    )
    amount_usd = (joined["amount"] * joined["currency"].map(FX_TO_USD)).round(2)
    known = joined["snapshot_ts"].notna()
    home = joined["country"].map(HOME_CURRENCY)
    enriched = pd.DataFrame(
        {
            "txn_id": joined["txn_id"],
            "account_id": joined["account_id"],
            "ts": joined["ts"],
            "merchant_category": joined["merchant_category"],
            "channel": joined["channel"],
            "amount_usd": amount_usd,
            "hour": joined["ts"].dt.hour.astype("int64"),
            "is_night": joined["ts"].dt.hour.isin(NIGHT_HOURS),
            "is_weekend": joined["ts"].dt.dayofweek >= 5,
            "account_known": known,
            "snapshot_ts": joined["snapshot_ts"],
            "segment": joined["segment"],
            "credit_limit": joined["credit_limit"],
            "account_age_days": ((joined["ts"] - joined["opened_at"]).dt.total_seconds() / 86400).round(3),
            "is_cross_currency": (joined["currency"] != home).astype("boolean").where(known),
            "amount_to_limit": (amount_usd / joined["credit_limit"]).round(6),
        }
    )
    ctx.log_metric("account_known_share", float(known.mean()))
    return enriched


@check("enriched_transactions")
def no_account_data_from_the_future(df: pd.DataFrame) -> CheckResult:
    """The point-in-time guarantee: no payment carries a snapshot taken after it."""
    return features_before_prediction(df, "snapshot_ts", "ts")


@check("enriched_transactions", blocking=False)
def few_payments_above_the_credit_limit(df: pd.DataFrame) -> CheckResult:
    """A warning, not a block: a payment above its credit limit is possible but rare; many point at bad CRM data."""
    share = float((df["amount_to_limit"] > 1).mean())
    message = f"{share:.2%} of payments above their credit limit"
    return CheckResult(share <= MAX_SHARE_ABOVE_LIMIT, metrics={"share_above_limit": share}, message=message)
