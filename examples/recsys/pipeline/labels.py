"""Stage 2, labels: did an impression lead to a click within 30 minutes, and to a purchase within 7 days?

A label is only written once it has matured. Partition ``D`` holds the impressions whose last label window
(the 7-day purchase window) closed during day ``D``, i.e. the impressions of day ``D - 7``, read through a
window over the events of days ``D - 7 … D``. An impression whose purchase window is still open at the
cut-off is therefore never labelled "no purchase": it waits for a later partition. The first 7 partitions
are empty (their impressions would come from before the first day).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from cairn import CheckResult, Context, Contract, Window, asset, check, col
from cairn.ml import labels_after_prediction
from pipeline.timeline import DAYS, LABEL_WINDOW_DAYS, PURCHASE_WINDOW_DAYS

if TYPE_CHECKING:
    import pandas as pd

LABEL_VERSIONS = {"click": "click_30m_v1", "purchase": "purchase_7d_v1"}


@asset(
    partitions=DAYS,
    params={"click_window_min": 30},
    ins={"events": Window("events", LABEL_WINDOW_DAYS)},
    tags={"stage": "labels"},
    contract=Contract(
        columns={
            "impression_id": col("int64", nullable=False),
            "impression_ts": col("timestamp", nullable=False),
            "click": col("int64", allowed=[0, 1], nullable=False),
            "purchase": col("int64", allowed=[0, 1], nullable=False),
        },
        unique=["impression_id"],
    ),
)
def labels(ctx: Context, events: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Click and purchase labels of the impressions whose labels matured on this day."""
    import pandas as pd

    assert ctx.partition_window is not None
    day_start, cutoff = ctx.partition_window
    maturity = timedelta(days=PURCHASE_WINDOW_DAYS)
    mature = pd.concat(
        [
            day[
                (day["event_type"] == "impression")
                & (day["ts"] + maturity >= day_start)
                & (day["ts"] + maturity < cutoff)
            ]
            for day in events.values()
        ],
        ignore_index=True,
    )
    outcomes = pd.concat([day[day["event_type"] != "impression"] for day in events.values()], ignore_index=True)
    log = outcomes[outcomes["impression_id"].isin(mature["impression_id"])]
    out = pd.DataFrame(
        {
            "impression_id": mature["impression_id"],
            "session_id": mature["session_id"],
            "user_id": mature["user_id"],
            "item_id": mature["item_id"],
            "category": mature["category"],
            "position": mature["position"],
            "impression_ts": mature["ts"],
        }
    ).reset_index(drop=True)
    out["click_ts"] = _first_within(log, "click", out, timedelta(minutes=ctx.params["click_window_min"]))
    out["purchase_ts"] = _first_within(log, "purchase", out, timedelta(days=PURCHASE_WINDOW_DAYS))
    out["click"] = out["click_ts"].notna().astype("int64")
    out["purchase"] = out["purchase_ts"].notna().astype("int64")
    cut = pd.Timestamp(cutoff).tz_convert("UTC")
    out["label_cutoff"] = pd.Series(cut, index=out.index, dtype=out["impression_ts"].dtype)
    ctx.add_metadata(
        maturity_cutoff=pd.Timestamp(cutoff).isoformat(),
        label_versions=LABEL_VERSIONS,
        click_window_min=ctx.params["click_window_min"],
        purchase_window_days=PURCHASE_WINDOW_DAYS,
    )
    if len(out):
        ctx.log_metrics(
            {"impressions": len(out), "click_rate": out["click"].mean(), "purchase_rate": out["purchase"].mean()}
        )
    return out.sort_values("impression_id", kind="stable").reset_index(drop=True)


def _first_within(log: pd.DataFrame, kind: str, shown: pd.DataFrame, window: timedelta) -> pd.Series:
    """The time of each impression's first event of a kind, if it came within `window`; else NaT."""
    import pandas as pd

    first = log[log["event_type"] == kind].groupby("impression_id")["ts"].min()
    dtype = shown["impression_ts"].dtype
    if first.empty:
        return pd.Series(pd.NaT, index=shown.index, dtype=dtype)
    when = shown["impression_id"].map(first).astype(dtype)
    return when.where(when - shown["impression_ts"] <= window)


@check("labels")
def labels_are_mature(labels: pd.DataFrame) -> CheckResult:
    """No impression is labelled before its 7-day purchase window has closed at the label cut-off."""
    early = int((labels["impression_ts"] + timedelta(days=PURCHASE_WINDOW_DAYS) > labels["label_cutoff"]).sum())
    return CheckResult(early == 0, metrics={"violations": early}, message=f"{early} labels written before maturity")


@check("labels")
def clicks_come_after_the_impression(labels: pd.DataFrame) -> CheckResult:
    return labels_after_prediction(labels, "click_ts", "impression_ts")


@check("labels")
def purchases_come_after_the_impression(labels: pd.DataFrame) -> CheckResult:
    return labels_after_prediction(labels, "purchase_ts", "impression_ts")
