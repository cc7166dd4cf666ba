"""Ingestion tier: the landed files as versioned sources, each with a contract on its raw schema.

cairn hashes every landed file and copies its bytes into the artifact store once per version, so each
result downstream can be traced to (and reproduced from) exactly the bytes it read. A day whose file has not
landed yet is "not ready": it is skipped with everything that depends on it, and the run does not fail.
A file that does not parse into the expected columns and types fails here, before any tier reads it.
A sensor on each source runs what a file feeds as soon as it lands (`cairn daemon`; see the README).
"""

from cairn import Contract, col, sensor, source
from tiers import DAYS

raw_transactions = source(
    "raw_transactions",
    path="data/landing/payments/transactions_{partition}.csv",
    partitions=DAYS,
    contract=Contract(
        columns={
            "txn_id": col("int64", nullable=False),
            "account_id": col("int64"),  # broken messages arrive without one: cleansing drops them
            "ts": col("timestamp", nullable=False),
            "amount": col("float64"),
            "currency": col("string", nullable=False),
            "merchant_category": col("string", nullable=False),
            "channel": col("string", nullable=False),
        },
        rows=(1, None),
    ),
    tags={"tier": "ingestion", "domain": "payments"},
)

raw_accounts = source(
    "raw_accounts",
    path="data/landing/crm/accounts_{partition}.csv",
    partitions=DAYS,
    contract=Contract(
        columns={
            "account_id": col("int64", nullable=False),
            "customer_id": col("int64", nullable=False),
            "segment": col("string"),  # the export loses a segment now and then: cleansing marks it unknown
            "country": col("string", nullable=False),
            "credit_limit": col("float64", nullable=False),
            "opened_on": col("date", nullable=False),
            "snapshot_ts": col("timestamp", nullable=False),
        },
        rows=(1, None),
    ),
    tags={"tier": "ingestion", "domain": "crm"},
)

# Run what a new or re-delivered file feeds, when it lands: the selection's stale steps execute (the day's
# tiers and the windows covering it), everything else is cached.
payments_landed = sensor("payments_landed", on_source="raw_transactions", select="+feature_table")
crm_landed = sensor("crm_landed", on_source="raw_accounts", select="+feature_table")
