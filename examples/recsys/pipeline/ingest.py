"""Stage 1, the input data: a simulated world, its daily event log, and the validated events.

``world`` → ``users``, ``items`` → ``traffic`` (each day played out, hidden truth) → ``raw_events`` (what the
clients logged that day) → ``events`` (validated: the contract blocks a bad day before anything reads it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cairn import CheckResult, Context, Contract, Fatal, Window, asset, check, col
from pipeline import simulation
from pipeline.timeline import DAYS, MAX_EVENT_DELAY_DAYS, day_index, end_moment, first_moment

if TYPE_CHECKING:
    import pandas as pd

EVENT_TYPES = ("impression", "click", "purchase")
_TYPE_CODE = {"impression": 0, "click": 1, "purchase": 2}

EVENT_COLUMNS = {
    "event_id": col("int64", nullable=False),
    "event_type": col("string", nullable=False, allowed=list(EVENT_TYPES)),
    "ts": col("timestamp", nullable=False),
    "user_id": col("int64", nullable=False, min=1),
    "item_id": col("int64", nullable=False),
    "impression_id": col("int64", nullable=False),
    "session_id": col("int64", nullable=False),
    "position": col("int64", nullable=False, min=0),
}


@asset(params={"scale": 1.0, "seed": 7}, tags={"stage": "input"})
def world(ctx: Context) -> dict[str, Any]:
    """The size and seed of the simulated world (scale 1.0: about 320,000 events over 42 days)."""
    n_users, n_items = simulation.world_sizes(ctx.params["scale"])
    return {"n_users": n_users, "n_items": n_items, "seed": ctx.params["seed"], "scale": ctx.params["scale"]}


@asset(tags={"stage": "input"})
def users(world: dict[str, Any]) -> pd.DataFrame:
    """Users: signup time, region, device (and the simulator's hidden tastes, ``sim_*``)."""
    return simulation.make_users(world["seed"], world["n_users"], first_moment(), end_moment())


@asset(
    tags={"stage": "input"},
    contract=Contract(
        columns={"item_id": col("int64", nullable=False), "category": col("int64", min=0), "price": col(min=0)},
        unique=["item_id"],
    ),
)
def items(world: dict[str, Any]) -> pd.DataFrame:
    """The catalog: item category and price (and the simulator's hidden quality, ``sim_*``)."""
    return simulation.make_items(world["seed"], world["n_items"])


@asset(partitions=DAYS, tags={"stage": "input"})
def traffic(ctx: Context, world: dict[str, Any], users: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    """One day of feed traffic, played out by the simulator (hidden truth).

    Every impression of the day with when, if ever, it was clicked and bought; those clicks and purchases
    happen over the following days, so only `raw_events` of later days log them.
    """
    assert ctx.partition is not None
    return simulation.simulate_day(world["seed"], users, items, day_index(ctx.partition), first_moment())


@asset(
    partitions=DAYS,
    params={"duplicate_days": []},
    ins={"traffic": Window("traffic", MAX_EVENT_DELAY_DAYS + 1)},
    tags={"stage": "input"},
)
def raw_events(ctx: Context, traffic: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The day's client log: impressions, clicks and purchases that happened that day.

    A purchase can follow its impression by days. ``duplicate_days`` simulates a client bug that logs
    every 25th event of those days twice.
    """
    import numpy as np
    import pandas as pd

    assert ctx.partition_window is not None
    start, end = (simulation.to_us(moment) for moment in ctx.partition_window)
    played = pd.concat(list(traffic.values()), ignore_index=True)
    parts = []
    for kind, column in (("impression", "shown_us"), ("click", "click_us"), ("purchase", "purchase_us")):
        happened = played[(played[column] >= start) & (played[column] < end)].reset_index(drop=True)
        parts.append(
            pd.DataFrame(
                {
                    "event_id": happened["impression_id"] * 4 + _TYPE_CODE[kind],
                    "event_type": kind,
                    "ts": simulation.timestamps(happened[column].to_numpy()),
                    "user_id": happened["user_id"],
                    "item_id": happened["item_id"],
                    "impression_id": happened["impression_id"],
                    "session_id": happened["session_id"],
                    "position": happened["position"],
                    "amount": np.where(kind == "purchase", happened["price"], np.nan),
                }
            )
        )
    log = pd.concat(parts, ignore_index=True).sort_values(["ts", "event_id"], kind="stable")
    faulty = ctx.params["duplicate_days"]
    if not isinstance(faulty, list):
        raise Fatal(f'raw_events: duplicate_days must be a list of days, e.g. ["2026-06-02"], got {faulty!r}')
    if ctx.partition in faulty:
        twice = log.iloc[::25]
        log = pd.concat([log, twice]).sort_values(["ts", "event_id"], kind="stable")
        ctx.log.warning("simulating a client bug: %d events logged twice", len(twice))
    ctx.log_metrics({f"{kind}s": float((log["event_type"] == kind).sum()) for kind in EVENT_TYPES})
    return log.reset_index(drop=True)


@asset(
    partitions=DAYS,
    tags={"stage": "validate"},
    contract=Contract(
        columns={**EVENT_COLUMNS, "category": col("int64", nullable=False, min=0), "amount": col("float64", min=0)},
        unique=["event_id"],
        rows=(1, None),
    ),
)
def events(ctx: Context, raw_events: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    """The validated event log of a day, with each item's category.

    Its contract (unique event ids, known event types, no missing ids, every item in the catalog) and its
    check must pass before any label or feature reads the day.
    """
    enriched = raw_events.merge(items[["item_id", "category"]], on="item_id", how="left", validate="many_to_one")
    ctx.log_metric("rows", float(len(enriched)))
    return enriched


@check("events")
def events_within_their_day(ctx: Context, events: pd.DataFrame) -> CheckResult:
    """Every event of a day's log happened on that day."""
    start, end = ctx.partition_window
    outside = int(((events["ts"] < start) | (events["ts"] >= end)).sum())
    return CheckResult(outside == 0, metrics={"violations": outside}, message=f"{outside} events outside the day")
