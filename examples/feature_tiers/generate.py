"""Lands the example's raw files the way its two upstream systems deliver them (standard library only).

Two systems feed the pipeline, each with its own timetable:

    payments  one CSV of transactions per day, delivered at 00:30 the next day
              (except OUTAGE_DAY, replayed after an outage on 2026-06-15 at 11:00)
    CRM       one CSV snapshot of every account per day, taken at 18:00 and delivered at 08:00 the next day
              (CORRECTED_DAY is re-delivered with corrected credit limits on 2026-06-15 at 14:00)

``--until`` is the clock: the landing folder then holds exactly the latest delivery of every file that has
arrived by that time (files not yet delivered are absent). Every file is a pure function of the scale
options and its delivery, so running the script twice writes nothing new.

    python generate.py                               # the landing zone at 2026-06-15 06:00
    python generate.py --until 2026-06-15T09:00      # + the CRM snapshot of 2026-06-14
    python generate.py --until 2026-06-15T12:00      # + the replayed payments of 2026-06-05
    python generate.py --until 2026-06-15T15:00      # + the corrected CRM snapshot of 2026-06-03
    python generate.py --corrupt schema 2026-06-09   # a broken payments export (fault injection)
"""

from __future__ import annotations

import argparse
import functools
import io
import itertools
import math
import random
import sys
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

FIRST_DAY = date(2026, 6, 1)
DAY_COUNT = 14  # the calendar of the pipeline: 2026-06-01 .. 2026-06-14
OUTAGE_DAY = date(2026, 6, 5)
OUTAGE_DELIVERY = datetime(2026, 6, 15, 11, 0, tzinfo=UTC)
CORRECTED_DAY = date(2026, 6, 3)
CORRECTION_DELIVERY = datetime(2026, 6, 15, 14, 0, tzinfo=UTC)
DEFAULT_UNTIL = "2026-06-15T06:00"
SNAPSHOT_HOUR = 18
SEED = 20260601

COUNTRIES = ("US", "GB", "DE", "FR")
HOME_CURRENCY = {"US": "USD", "GB": "GBP", "DE": "EUR", "FR": "EUR"}
SEGMENTS = ("retail", "smb", "corporate")
CATEGORIES = {"grocery": 35.0, "restaurants": 45.0, "fuel": 60.0, "online": 70.0, "electronics": 240.0, "travel": 420.0}
CHANNELS = ("card_present", "contactless", "online")
HOUR_WEIGHTS = (1, 1, 1, 1, 1, 2, 4, 6, 8, 9, 9, 10, 11, 10, 9, 9, 9, 10, 11, 11, 9, 7, 4, 2)

TRANSACTION_COLUMNS = ("txn_id", "account_id", "ts", "amount", "currency", "merchant_category", "channel")
ACCOUNT_COLUMNS = ("account_id", "customer_id", "segment", "country", "credit_limit", "opened_on", "snapshot_ts")


@dataclass(frozen=True)
class Scale:
    """How big the generated data is."""

    accounts: int
    per_day: int


@dataclass(frozen=True)
class Account:
    account_id: int
    customer_id: int
    segment: str
    country: str
    credit_limit: float
    opened_on: date
    activity: float


def days() -> list[date]:
    return [FIRST_DAY + timedelta(days=i) for i in range(DAY_COUNT)]


def payments_delivery(day: date) -> datetime:
    if day == OUTAGE_DAY:
        return OUTAGE_DELIVERY
    return datetime.combine(day + timedelta(days=1), time(0, 30), UTC)


def crm_delivery(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), time(8, 0), UTC)


# ---- the CRM: account state, simulated day by day ------------------------------------------------


def accounts_on(day: date, scale: Scale) -> list[Account]:
    """Every account open at the CRM snapshot of `day`."""
    if day not in days():
        raise ValueError(f"{day} is outside the calendar {FIRST_DAY} .. {days()[-1]}")
    return _account_history(scale)[day]


@functools.cache
def _account_history(scale: Scale) -> dict[date, list[Account]]:
    """The accounts at each day's snapshot, simulated day by day: new accounts open, credit limits change."""
    rng = random.Random(SEED)
    accounts = [_new_account(rng, 100_000 + i, _opened_before(rng)) for i in range(scale.accounts)]
    history = {}
    for day in days():
        daily = random.Random(SEED + day.toordinal())
        for i, account in enumerate(accounts):
            if daily.random() < 0.02:  # a credit review
                limit = account.credit_limit * daily.choice((0.8, 1.25, 1.5))
                accounts[i] = replace(account, credit_limit=max(500.0, float(round(limit / 500) * 500)))
        for _ in range(max(1, scale.accounts // 100)):
            accounts.append(_new_account(daily, 100_000 + len(accounts), day))
        history[day] = list(accounts)
    return history


def _opened_before(rng: random.Random) -> date:
    return FIRST_DAY - timedelta(days=rng.randint(1, 900))


def _new_account(rng: random.Random, account_id: int, opened_on: date) -> Account:
    segment = rng.choices(SEGMENTS, weights=(70, 25, 5))[0]
    base = {"retail": 3_000.0, "smb": 15_000.0, "corporate": 60_000.0}[segment]
    return Account(
        account_id=account_id,
        customer_id=500_000 + rng.randrange(1_000_000),
        segment=segment,
        country=rng.choices(COUNTRIES, weights=(50, 20, 15, 15))[0],
        credit_limit=float(round(base * rng.uniform(0.5, 2.0) / 500) * 500),
        opened_on=opened_on,
        activity=rng.lognormvariate(0.0, 0.8),
    )


def crm_snapshot(day: date, scale: Scale, corrected: bool) -> str:
    """The CRM export of `day`; the first delivery of CORRECTED_DAY has its credit limits in thousands."""
    rng = random.Random(SEED * 3 + day.toordinal())
    taken = datetime.combine(day, time(SNAPSHOT_HOUR), UTC)
    in_thousands = day == CORRECTED_DAY and not corrected
    rows = []
    for account in accounts_on(day, scale):
        limit = account.credit_limit / 1000 if in_thousands else account.credit_limit
        row = [
            str(account.account_id),
            str(account.customer_id),
            "" if rng.random() < 0.01 else account.segment,  # an export glitch: the segment is missing
            account.country.lower() if rng.random() < 0.05 else account.country,  # one region exports lower case
            f"{limit:.2f}",
            account.opened_on.isoformat(),
            _iso(taken),
        ]
        rows.append(row)
        if rng.random() < 0.005:  # the export repeats a row now and then
            rows.append(row)
    return _csv(ACCOUNT_COLUMNS, rows)


# ---- payments: one day of transactions ------------------------------------------------------------


def transactions(day: date, scale: Scale, corrupt: str | None = None) -> str:
    """The payments export of `day`: card transactions of accounts opened before that day."""
    rng = random.Random(SEED * 7 + day.toordinal())
    eligible = [a for a in accounts_on(day, scale) if a.opened_on < day]
    cumulative = list(itertools.accumulate(a.activity for a in eligible))
    hours = list(itertools.accumulate(HOUR_WEIGHTS))
    rows = []
    for i in range(scale.per_day):
        account = rng.choices(eligible, cum_weights=cumulative)[0]
        category = rng.choice(tuple(CATEGORIES))
        hour, second = rng.choices(range(24), cum_weights=hours)[0], rng.randrange(3600)
        home = HOME_CURRENCY[account.country]
        currency = home if rng.random() < 0.9 else rng.choice([c for c in ("USD", "EUR", "GBP") if c != home])
        amount = round(CATEGORIES[category] * math.exp(rng.gauss(0.0, 0.6)), 2)
        row = [
            str(day.toordinal() * 1_000_000 + i),
            "" if rng.random() < 0.003 else str(account.account_id),  # a broken message
            f"{day.isoformat()}T{hour:02d}:{second // 60:02d}:{second % 60:02d}Z",
            "" if rng.random() < 0.003 else _amount(amount, corrupt, i),
            currency.lower() if rng.random() < 0.02 else currency,
            category,
            rng.choice(CHANNELS),
        ]
        rows.append(row)
        if rng.random() < 0.01:  # at-least-once delivery: the same event sent twice
            rows.append(row)
    rows.sort(key=lambda r: (r[2], r[0]))
    return _csv(TRANSACTION_COLUMNS, rows)


def _amount(amount: float, corrupt: str | None, row: int) -> str:
    if corrupt == "schema":
        return f"${amount:.2f}"  # the export started formatting amounts as money
    if corrupt == "values" and row % 20 == 3:
        return f"{-amount:.2f}"  # chargebacks leaked into the sales feed
    return f"{amount:.2f}"


# ---- landing --------------------------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _csv(header: tuple[str, ...], rows: list[list[str]]) -> str:
    out = io.StringIO()
    out.write(",".join(header) + "\n")
    for row in rows:
        out.write(",".join(row) + "\n")
    return out.getvalue()


def payments_path(data: Path, day: date) -> Path:
    return data / "landing" / "payments" / f"transactions_{day.isoformat()}.csv"


def crm_path(data: Path, day: date) -> Path:
    return data / "landing" / "crm" / f"accounts_{day.isoformat()}.csv"


def land(data: Path, scale: Scale, until: datetime) -> list[str]:
    """Make the landing folder hold exactly what has been delivered by `until`; returns what changed."""
    changes = []
    for day in days():
        payments = transactions(day, scale) if payments_delivery(day) <= until else None
        changes += _place(payments_path(data, day), payments)
        snapshot = None
        if crm_delivery(day) <= until:
            snapshot = crm_snapshot(day, scale, corrected=day == CORRECTED_DAY and until >= CORRECTION_DELIVERY)
        changes += _place(crm_path(data, day), snapshot)
    return changes


def _place(path: Path, text: str | None) -> list[str]:
    """Write (or remove) one landed file, only when it differs: an unchanged file keeps its bytes and mtime."""
    if text is None:
        if path.exists():
            path.unlink()
            return [f"removed {path}"]
        return []
    data = text.encode("utf-8")
    if path.exists() and path.read_bytes() == data:
        return []
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)  # a reader never sees half a file
    return [f"landed {path}"]


def _day(text: str) -> date:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a day like 2026-06-09") from None
    if day not in days():
        raise argparse.ArgumentTypeError(f"{day} is outside the calendar {FIRST_DAY} .. {days()[-1]}")
    return day


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time like 2026-06-15T09:00") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data", type=Path, default=Path(__file__).parent / "data", help="default: data/ beside this script"
    )
    parser.add_argument("--accounts", type=int, default=5000, help="accounts at the start (default 5000)")
    parser.add_argument("--per-day", type=int, default=20000, help="transactions per day (default 20000)")
    parser.add_argument(
        "--until",
        type=_moment,
        default=_moment(DEFAULT_UNTIL),
        metavar="TIME",
        help=f"the landing zone's clock, UTC (default {DEFAULT_UNTIL})",
    )
    parser.add_argument(
        "--corrupt",
        nargs=2,
        metavar=("KIND", "DAY"),
        help="overwrite one landed payments file with a broken export: KIND 'schema' (amounts as '$12.50') "
        "or 'values' (negative amounts); run without --corrupt to land the good file again",
    )
    args = parser.parse_args(argv)
    if args.accounts < 10 or args.per_day < 10:
        parser.error("--accounts and --per-day must be at least 10")
    scale = Scale(args.accounts, args.per_day)
    if args.corrupt:
        kind, text = args.corrupt
        if kind not in ("schema", "values"):
            parser.error(f"--corrupt KIND must be 'schema' or 'values', got {kind!r}")
        try:
            day = _day(text)
        except argparse.ArgumentTypeError as exc:
            parser.error(str(exc))
        changes = _place(payments_path(args.data, day), transactions(day, scale, corrupt=kind))
    else:
        changes = land(args.data, scale, args.until)
    for line in changes:
        print(line)
    print(f"{len(changes)} file(s) changed under {args.data}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
