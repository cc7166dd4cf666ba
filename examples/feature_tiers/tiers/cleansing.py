"""Cleansing tier: repeated rows and broken records removed, codes normalized, under a stricter contract.

What cleansing may repair it repairs and counts (resent duplicates, rows without an account or an amount,
lower-case codes, a missing segment); what it must not guess about fails its contract and blocks the day:
two different records with one id, a negative amount, an unknown currency, a day that ends hours early.
"""

from __future__ import annotations

from datetime import UTC
from typing import TYPE_CHECKING

from cairn import Context, Contract, Freshness, asset, check, col
from tiers import DAYS

if TYPE_CHECKING:
    import pandas as pd

CURRENCIES = ("USD", "EUR", "GBP")
COUNTRIES = ("US", "GB", "DE", "FR")
SEGMENTS = ("retail", "smb", "corporate", "unknown")
CHANNELS = ("card_present", "contactless", "online")


@asset(
    partitions=DAYS,
    contract=Contract(
        columns={
            "txn_id": col("int64", nullable=False),
            "account_id": col("int64", nullable=False),
            "ts": col("timestamp", nullable=False),
            "amount": col("float64", nullable=False, min=0),
            "currency": col("string", nullable=False, allowed=CURRENCIES),
            "merchant_category": col("string", nullable=False),
            "channel": col("string", nullable=False, allowed=CHANNELS),
        },
        unique=["txn_id"],
        rows=(1, None),
        freshness=Freshness("ts", max_lag_hours=6),  # a day whose last payment is older is incomplete
    ),
    tags={"tier": "cleansing", "domain": "payments"},
)
def clean_transactions(ctx: Context, raw_transactions: pd.DataFrame) -> pd.DataFrame:
    """Payments without resent duplicates or broken rows; currency codes in upper case."""
    deduplicated = raw_transactions.drop_duplicates()
    broken = deduplicated["account_id"].isna() | deduplicated["amount"].isna()
    clean = deduplicated[~broken].assign(
        account_id=lambda df: df["account_id"].astype("int64"),
        currency=lambda df: df["currency"].str.upper(),
    )
    ctx.log_metrics(
        {
            "raw_rows": len(raw_transactions),
            "duplicates_removed": len(raw_transactions) - len(deduplicated),
            "broken_removed": int(broken.sum()),
        }
    )
    return clean.sort_values(["ts", "txn_id"]).reset_index(drop=True)


@asset(
    partitions=DAYS,
    contract=Contract(
        columns={
            "account_id": col("int64", nullable=False),
            "customer_id": col("int64", nullable=False),
            "segment": col("string", nullable=False, allowed=SEGMENTS),
            "country": col("string", nullable=False, allowed=COUNTRIES),
            "credit_limit": col("float64", nullable=False, min=0),
            "opened_at": col("timestamp", nullable=False),
            "snapshot_ts": col("timestamp", nullable=False),
        },
        unique=["account_id"],
        rows=(1, None),
    ),
    tags={"tier": "cleansing", "domain": "crm"},
)
def clean_accounts(ctx: Context, raw_accounts: pd.DataFrame) -> pd.DataFrame:
    """One row per account of the day's CRM snapshot; a missing segment becomes "unknown"."""
    import pandas as pd

    deduplicated = raw_accounts.drop_duplicates()
    missing = deduplicated["segment"].isna() | (deduplicated["segment"] == "")  # CSV reads an empty field as ""
    ctx.log_metrics(
        {
            "raw_rows": len(raw_accounts),
            "duplicates_removed": len(raw_accounts) - len(deduplicated),
            "segments_missing": int(missing.sum()),
        }
    )
    clean = deduplicated.assign(
        segment=deduplicated["segment"].mask(missing, "unknown"),
        country=lambda df: df["country"].str.upper(),
        opened_at=lambda df: pd.to_datetime(df["opened_on"]).dt.tz_localize(UTC),
    )
    return clean.drop(columns="opened_on").sort_values("account_id").reset_index(drop=True)


@check("clean_transactions")
def payments_within_their_day(ctx: Context, df: pd.DataFrame) -> bool:
    """Every payment of a day's file happened on that day (the export is cut at midnight UTC)."""
    import pandas as pd

    start, end = ctx.partition_window
    return bool(df["ts"].between(pd.Timestamp(start), pd.Timestamp(end), inclusive="left").all())


@check("clean_accounts")
def snapshot_taken_on_its_day(ctx: Context, df: pd.DataFrame) -> bool:
    """A CRM file holds one snapshot, taken during the day it is filed under."""
    import pandas as pd

    start, end = ctx.partition_window
    taken = df["snapshot_ts"].unique()
    return len(taken) == 1 and start <= pd.Timestamp(taken[0]).to_pydatetime() < end
