"""The synthetic world behind the example: users, items, and what happens when a feed shows an item.

Nothing here knows about cairn. Every function is a pure function of its arguments (seeds included), so any
day of the log can be simulated on its own, in any process, with the same result.

What a model can learn (the rest is noise):

- affinity: every user has a taste over the item categories, and clicks follow it;
- recency: a user's interest moves between categories in episodes of one to two weeks; the category in
  focus gets more clicks and purchases, so recent behaviour predicts better than old behaviour;
- popularity: items differ in a hidden quality, which shows in their click-through rate;
- position, price, weekends and the curiosity of new users shift the click rate too.

Columns named ``sim_*`` are the simulator's hidden truth; nothing after the raw log reads them.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

N_CATEGORIES = 8
SESSION_LENGTH = 10
REGIONS = ("us", "eu", "apac")
DEVICES = ("ios", "android", "web")
SIGNUP_HISTORY_DAYS = 365
NEWCOMER_SHARE = 0.25  # users who sign up during the simulated period
PERSONALIZED_SHARE = 0.35  # feed slots the logging policy fills from the user's taste
LATE_CLICK_SHARE = 0.12  # clicks that come back later than 30 minutes
MAX_CLICK_DELAY_S = 6 * 3600
DAY_S = 86_400
US = 1_000_000


def world_sizes(scale: float) -> tuple[int, int]:
    """Users and items for a scale (1.0: 2,000 users, 400 items, about 320,000 events over the 42 days)."""
    if not isinstance(scale, int | float) or isinstance(scale, bool) or not scale > 0:
        raise ValueError(f"scale must be a positive number (1.0 is the default size), got {scale!r}")
    return max(40, round(2000 * scale)), max(60, round(400 * math.sqrt(scale)))


def make_users(seed: int, n_users: int, first: datetime, end: datetime) -> pd.DataFrame:
    """Users with observable attributes (signup time, region, device) and hidden tastes and habits."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng([seed, 1])
    period_s = (end - first).total_seconds() - 7 * DAY_S
    newcomer = rng.random(n_users) < NEWCOMER_SHARE
    offset_s = np.where(
        newcomer, rng.uniform(0, period_s, n_users), -rng.uniform(0, SIGNUP_HISTORY_DAYS * DAY_S, n_users)
    )
    signup_us = (to_us(first) + offset_s.astype(np.int64) * US) // US * US
    taste = rng.dirichlet(np.full(N_CATEGORIES, 0.35), n_users)
    users = pd.DataFrame(
        {
            "user_id": np.arange(1, n_users + 1, dtype=np.int64),
            "signup_ts": timestamps(signup_us),
            "region": np.array(REGIONS)[rng.choice(len(REGIONS), n_users, p=[0.45, 0.35, 0.2])],
            "device": np.array(DEVICES)[rng.choice(len(DEVICES), n_users, p=[0.4, 0.4, 0.2])],
            "sim_activity": rng.beta(2.0, 4.5, n_users).round(6),
            "sim_bias": rng.normal(0.0, 0.4, n_users).round(6),
            "sim_focus_days": rng.integers(6, 17, n_users),
            "sim_focus_phase": rng.integers(0, 17, n_users),
        }
    )
    for k in range(N_CATEGORIES):
        users[f"sim_taste_{k}"] = taste[:, k].round(6)
    return users


def make_items(seed: int, n_items: int) -> pd.DataFrame:
    """Items with a category and a price, and a hidden quality that drives clicks and exposure."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng([seed, 2])
    category = rng.integers(0, N_CATEGORIES, n_items)
    quality = rng.normal(0.0, 1.0, n_items)
    price = np.exp(rng.normal(np.log(30.0) + 0.15 * (category - N_CATEGORIES / 2), 0.6))
    return pd.DataFrame(
        {
            "item_id": np.arange(10_001, 10_001 + n_items, dtype=np.int64),
            "category": category.astype(np.int64),
            "price": price.round(2),
            "sim_quality": quality.round(6),
            "sim_exposure": np.exp(0.9 * quality + rng.normal(0.0, 0.8, n_items)).round(6),
        }
    )


def focus_categories(seed: int, users: pd.DataFrame, day: int) -> np.ndarray:
    """Each user's category in focus on a day: drawn from the user's taste, once per interest episode."""
    import numpy as np

    episode = (day + users["sim_focus_phase"].to_numpy()) // users["sim_focus_days"].to_numpy()
    taste = _taste(users)
    noise = _uniform(seed, users["user_id"].to_numpy()[:, None], episode[:, None], np.arange(N_CATEGORIES)[None, :])
    gumbel = -np.log(-np.log(noise))
    return np.asarray(np.argmax(np.log(taste + 1e-9) + gumbel, axis=1))


def simulate_day(seed: int, users: pd.DataFrame, items: pd.DataFrame, day: int, first: datetime) -> pd.DataFrame:
    """The impressions shown on day `day` (days since `first`), each with its click and purchase times, if any.

    Times are microseconds since the epoch (UTC), 0 when the event did not happen.
    """
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng([seed, 3, day + 100_000])
    start_us = to_us(first) + day * DAY_S * US
    weekend = datetime.fromtimestamp(start_us // US, tz=UTC).weekday() >= 5
    signup_us = epoch_us(users["signup_ts"])
    active = (signup_us < start_us) & (
        rng.random(len(users)) < users["sim_activity"].to_numpy() * (1.2 if weekend else 1)
    )
    first_sessions = np.flatnonzero(active)
    second_sessions = first_sessions[rng.random(len(first_sessions)) < 0.15]
    session_user = np.concatenate([first_sessions, second_sessions])
    n_sessions = len(session_user)
    n_rows = n_sessions * SESSION_LENGTH
    if n_rows >= 10**7:
        raise ValueError(f"{n_rows} impressions on one day is more than impression ids allow (10 million)")
    session_start = start_us + (rng.beta(2.2, 1.6, n_sessions) * (DAY_S - 3600) * US).astype(np.int64)

    row_session = np.repeat(np.arange(n_sessions), SESSION_LENGTH)
    user_row = session_user[row_session]
    position = np.tile(np.arange(SESSION_LENGTH), n_sessions)
    shown_us = session_start[row_session] + position * 8 * US
    item_row = _feed(rng, users, items, user_row)

    taste = _taste(users)[user_row]
    category = items["category"].to_numpy()[item_row]
    price = items["price"].to_numpy()[item_row]
    quality = items["sim_quality"].to_numpy()[item_row]
    in_focus = category == focus_categories(seed, users, day)[user_row]
    newcomer = (shown_us - signup_us[user_row]) < 7 * DAY_S * US
    affinity = np.log(N_CATEGORIES * taste[np.arange(n_rows), category] + 0.02)
    logit = (
        -3.4
        + users["sim_bias"].to_numpy()[user_row]
        + 0.8 * affinity
        + 1.3 * in_focus
        + 0.5 * quality
        - 0.10 * position
        - 0.25 * np.log(price / 30.0)
        + 0.15 * weekend
        + 0.4 * newcomer
    )
    clicked = rng.random(n_rows) < _sigmoid(logit)
    late = rng.random(n_rows) < LATE_CLICK_SHARE
    delay_s = np.where(late, rng.uniform(1860, MAX_CLICK_DELAY_S, n_rows), 5 + rng.exponential(240, n_rows))
    click_us = np.where(clicked, shown_us + (delay_s * US).astype(np.int64), 0)
    buy_logit = -1.9 + 0.6 * quality - 0.6 * np.log(price / 30.0) + 0.9 * in_focus
    bought = clicked & (rng.random(n_rows) < _sigmoid(buy_logit))
    buy_delay_s = np.clip(np.exp(rng.normal(np.log(20 * 3600), 1.1, n_rows)), 600, 9.9 * DAY_S)
    purchase_us = np.where(bought, click_us + (buy_delay_s * US).astype(np.int64), 0)

    base = (day + 1000) * 10**7
    return pd.DataFrame(
        {
            "impression_id": (base + np.arange(n_rows)).astype(np.int64),
            "session_id": ((day + 1000) * 10**6 + row_session).astype(np.int64),
            "user_id": users["user_id"].to_numpy()[user_row],
            "item_id": items["item_id"].to_numpy()[item_row],
            "position": position.astype(np.int64),
            "price": price,
            "shown_us": shown_us,
            "click_us": click_us,
            "purchase_us": purchase_us,
        }
    )


def _feed(rng: np.random.Generator, users: pd.DataFrame, items: pd.DataFrame, user_row: np.ndarray) -> np.ndarray:
    """The logging policy: mostly popular items, some slots from the user's favourite categories."""
    import numpy as np

    exposure = items["sim_exposure"].to_numpy()
    category = items["category"].to_numpy()
    n = len(user_row)
    chosen = rng.choice(len(items), n, p=exposure / exposure.sum())
    personalized = rng.random(n) < PERSONALIZED_SHARE
    wanted = np.argmax(np.cumsum(_taste(users)[user_row], axis=1) > rng.random(n)[:, None], axis=1)
    picks = rng.random(n)
    for k in range(N_CATEGORIES):
        members = np.flatnonzero(category == k)
        rows = np.flatnonzero(personalized & (wanted == k))
        if len(members) == 0 or len(rows) == 0:
            continue
        cumulative = np.cumsum(exposure[members])
        chosen[rows] = members[
            np.searchsorted(cumulative, picks[rows] * cumulative[-1], side="right").clip(0, len(members) - 1)
        ]
    return np.asarray(chosen)


def _taste(users: pd.DataFrame) -> np.ndarray:
    import numpy as np

    return np.asarray(users[[f"sim_taste_{k}" for k in range(N_CATEGORIES)]].to_numpy())


_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB


def _uniform(seed: int, *keys: np.ndarray) -> np.ndarray:
    """Uniform numbers in (0, 1) hashed from integer keys (broadcast together): splitmix64 over the keys."""
    import numpy as np

    shape = np.broadcast_shapes(*(np.shape(k) for k in keys))
    x = np.full(shape, seed % 2**64, dtype=np.uint64)
    for key in keys:
        x = _splitmix(x + np.uint64(_GOLDEN) + np.asarray(key).astype(np.int64).astype(np.uint64))
    return ((x >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)


def _splitmix(x: np.ndarray) -> np.ndarray:
    import numpy as np

    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(_MIX1)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(_MIX2)
    return np.asarray(x ^ (x >> np.uint64(31)))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    import numpy as np

    return np.asarray(1.0 / (1.0 + np.exp(-x)))


def to_us(moment: datetime) -> int:
    """A time-zone aware datetime as microseconds since the epoch."""
    return int(moment.timestamp()) * US


def epoch_us(times: pd.Series) -> np.ndarray:
    """A UTC timestamp column as microseconds since the epoch (NaT becomes 0)."""
    import numpy as np

    values = times.dt.tz_convert("UTC").dt.as_unit("us").astype("int64").to_numpy()
    return np.where(times.isna().to_numpy(), 0, values)


def timestamps(us: np.ndarray) -> pd.Series:
    """Microseconds since the epoch as a UTC timestamp column."""
    import numpy as np
    import pandas as pd

    return pd.Series(np.asarray(us, dtype=np.int64).astype("datetime64[us]")).dt.tz_localize("UTC")
