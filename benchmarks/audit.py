"""The audit log: appending 10,000 chained rows and verifying the chain (`cairn audit verify`).

    python benchmarks/audit.py [--repeat N] [--rows R] [--postgres [--postgres-url URL]] [--keep]

Each repetition makes a fresh project (a `cairn.toml` with a SQLite file database) in a temporary folder and:

* append: R rows (default 10,000) through `MetadataStore.append_audit`, one write transaction each, as every
  audited action does (take the head, hash, insert, move the head; WAL with synchronous=NORMAL);
* verify (API): `MetadataStore.verify_audit()` in this process: read every row, re-hash it, compare;
* verify (CLI): `cairn -C DIR audit verify` in a subprocess, start-up included.

With --postgres, the append and the API verify run on a fresh PostgreSQL database too (dropped afterwards):
on --postgres-url (a role that may create databases), or on a throwaway cluster with default durability
started as `metadata_pg.py` does. Prints medians (min-max) in a Markdown table.
"""

from __future__ import annotations

import os
import sys
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common as C
import metadata_pg

from cairn.storage.metadata import MetadataStore, open_metadata

PIPELINE = """\
from cairn import asset

@asset
def one() -> int:
    return 1
"""


def append_rows(meta: MetadataStore, rows: int) -> None:
    for n in range(rows):
        meta.append_audit("bench", "bench.act", f"subject-{n % 100}", {"n": n, "reason": "benchmark"})


def measure(meta: MetadataStore, rows: int, times: dict[str, list[float]], backend: str) -> None:
    seconds, _ = C.timed(lambda: append_rows(meta, rows))
    times[f"{backend}: append"].append(seconds)
    seconds, broken = C.timed(meta.verify_audit)
    if broken is not None or meta.audit_head()[0] != rows:
        raise SystemExit(f"the chain does not verify on {backend}: {broken}")
    times[f"{backend}: verify (API)"].append(seconds)


def main() -> None:
    parser = C.parser(__doc__.splitlines()[0], default_repeat=3)
    parser.add_argument("--rows", type=int, default=10_000, help="audit rows to append (default 10000)")
    parser.add_argument("--postgres", action="store_true", help="also measure on PostgreSQL")
    parser.add_argument("--postgres-url", help="the PostgreSQL server (default: a throwaway cluster)")
    args = parser.parse_args()
    C.header(f"audit log: {args.rows:,} rows", args.repeat)
    times: dict[str, list[float]] = {"sqlite: append": [], "sqlite: verify (API)": [], "sqlite: verify (CLI)": []}
    if args.postgres:
        times |= {"postgresql: append": [], "postgresql: verify (API)": []}
    server = metadata_pg.postgres_server(args.postgres_url) if args.postgres else nullcontext("")
    with C.workspace("audit", keep=args.keep) as base, server as admin_url:
        for i in range(args.repeat):
            C.progress(f"repetition {i + 1}/{args.repeat}")
            root = C.write_project(base / f"p{i}", "audit", PIPELINE, executor="inline")
            with open_metadata("sqlite:///.cairn/cairn.db", root) as meta:
                measure(meta, args.rows, times, "sqlite")
            cli = C.run([*C.MODULE_CLI, "-C", str(root), "audit", "verify"]).check()
            if not cli.stdout.startswith(f"chain intact: {args.rows} rows"):
                raise SystemExit(f"unexpected output of cairn audit verify: {cli.stdout}")
            times["sqlite: verify (CLI)"].append(cli.wall_s)
            if args.postgres:
                url = metadata_pg.fresh_database(admin_url)
                try:
                    with open_metadata(url, Path(root)) as meta:
                        measure(meta, args.rows, times, "postgresql")
                finally:
                    metadata_pg.drop_database(admin_url, url)
    table = C.Table(f"Appending and verifying {args.rows:,} audit rows", ["what", "seconds", "per row", "rows/s"])
    for name, values in times.items():
        median = C.median(values)
        table.add(name, C.spread(values, 3), f"{median / args.rows * 1e6:.0f} µs", f"{args.rows / median:,.0f}")
    table.notes.append(
        "append: one write transaction per row (the head, the hash, the insert); verify (CLI) includes the "
        "interpreter's and the CLI's start-up."
    )
    table.print()


if __name__ == "__main__":
    main()
