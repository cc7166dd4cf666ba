"""The example's calendar: which days exist, and how long labels take to mature and features look back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cairn import daily

FIRST_DAY = "2026-05-04"
END_DAY = "2026-06-15"  # exclusive: 42 daily partitions, fixed so that a rerun tomorrow finds the same days
DAYS = daily(FIRST_DAY, end=END_DAY)

PURCHASE_WINDOW_DAYS = 7  # purchase_7d: the longest label window, so a label matures 7 days after its impression
LABEL_WINDOW_DAYS = PURCHASE_WINDOW_DAYS + 1  # the impression's day and the 7 days after it
MAX_FEATURE_DAYS = 28  # the longest rolling window a feature may use
MAX_EVENT_DELAY_DAYS = 10  # the simulator's longest delay between an impression and a purchase


def day_start(key: str) -> datetime:
    """Midnight UTC of a partition key like ``2026-05-04``."""
    return datetime.strptime(key, "%Y-%m-%d").replace(tzinfo=UTC)


def day_index(key: str) -> int:
    """Days since the first partition (negative before it)."""
    return (day_start(key) - day_start(FIRST_DAY)).days


def first_moment() -> datetime:
    return day_start(FIRST_DAY)


def end_moment() -> datetime:
    return day_start(END_DAY)


def days_after(moment: datetime, days: int) -> datetime:
    return moment + timedelta(days=days)
