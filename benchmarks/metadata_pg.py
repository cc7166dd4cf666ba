"""The metadata store on PostgreSQL against SQLite: per-step overhead of the 200-node no-op DAG, and its writes.

    python benchmarks/metadata_pg.py [--repeat N] [--postgres-url URL]

The server is --postgres-url (or $CAIRN_TEST_POSTGRES_URL): a role that may create databases. Without one,
a throwaway cluster is started from the machine's server binaries on a loopback port with PostgreSQL's
default durability (fsync on, synchronous_commit on), and stopped at the end. Each repetition gets a fresh
project folder and, for PostgreSQL, a fresh database.

Measures, per metadata backend (SQLite file; PostgreSQL; PostgreSQL with synchronous_commit=off, which
like SQLite's WAL with synchronous=NORMAL may lose the last commits on a power cut but never corrupts):

(a) W1 cold of the 200-node layered DAG of dag200.py through the API in a fresh interpreter, inline
    executor: per-step overhead = (wall of `materialize()` - time in user functions) / 200;
(b) W2 the no-change rerun in the same process (200 cached lookups, no writes but the run's records);
(c) the metadata writes of one executed step, 200 times: acquire_lease (with the attempt record),
    commit_materialization (with two inputs) and a heartbeat.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common as C
import dag200

N_NODES = dag200.N_NODES

# Runs in a fresh interpreter: the metadata writes of one executed step, 200 times, on the given URL.
WRITES = """\
import json, os, socket, sys, time
from cairn.core import records as R
from cairn.storage.metadata import open_metadata

url, root = sys.argv[1], sys.argv[2]
meta = open_metadata(url, root)
run_id = "20261123-000000-bench0"
owner = f"{socket.gethostname()}:{os.getpid()}"
meta.create_run(R.RunRecord(run_id, R.RUNNING, "*", time.time(), args={}, environment={}))
spent = {"lease": 0.0, "commit": 0.0, "heartbeat": 0.0}
prev = []
for i in range(200):
    name, key = f"n{i // 10}_{i % 10}", f"b3:{i:064x}"
    digest = f"b3:{i + 1:064x}"
    t0 = time.perf_counter()
    attempt = R.AttemptRecord(run_id, name, "", 1, "running", time.time())
    token = meta.acquire_lease(key, run_id, owner, 60.0, attempt)
    t1 = time.perf_counter()
    inputs = tuple(R.InputRef(a, "", d) for a, d in prev[-2:])
    mat = R.Materialization(name, "", key, digest, 8, "json", "json", run_id, 1, "b3:" + "0" * 64,
                            {name: "b3:" + "1" * 64}, {"k": i % 10}, i, inputs, 0.0001, time.time())
    step = R.StepRecord(run_id, name, "", R.EXECUTED, "never materialized", key, digest, 1, 0.0001)
    meta.commit_materialization(mat, step, (key, token))
    t2 = time.perf_counter()
    meta.heartbeat_run(run_id)
    t3 = time.perf_counter()
    spent["lease"] += t1 - t0
    spent["commit"] += t2 - t1
    spent["heartbeat"] += t3 - t2
    prev.append((name, digest))
meta.close()
print(json.dumps(spent))
"""


# ---- a PostgreSQL server ------------------------------------------------------------------------------


def _version(initdb: str) -> list[int]:
    """The server version of /usr/lib/postgresql/<version>/bin/initdb, for sorting."""
    return [int(n) for n in Path(initdb).parts[-3].split(".") if n.isdigit()]


def _as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@contextmanager
def postgres_server(url: str | None) -> Iterator[str]:
    """The admin URL of a server: the given one, or a throwaway cluster with default durability settings."""
    if url:
        yield url
        return
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    if not found:
        raise SystemExit("no PostgreSQL server binaries found; pass --postgres-url or install 'postgresql'")
    bindir = Path(found[-1]).parent
    folder = Path(tempfile.mkdtemp(prefix="cairn-bench-pg-"))
    password = secrets.token_hex(12)
    (folder / "pw").write_text(password + "\n")
    if os.geteuid() == 0:
        for path in (folder, folder / "pw"):
            shutil.chown(path, "postgres")
    data = folder / "data"
    subprocess.run(
        _as_postgres([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", f"--pwfile={folder / 'pw'}",
                      "-E", "UTF8", "--auth-local=trust", "--auth-host=scram-sha-256"]),
        check=True, capture_output=True,
    )  # fmt: skip
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    options = f"-c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={folder}"
    start = [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w", "-o", options, "start"]
    subprocess.run(_as_postgres(start), check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://postgres:{password}@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]), check=False)
        shutil.rmtree(folder, ignore_errors=True)


def _admin(server: str, statement: str) -> None:
    import psycopg

    with psycopg.connect(urlunsplit(("postgresql", *urlsplit(server)[1:])), autocommit=True) as admin:
        admin.execute(statement)


def fresh_database(server: str, query: str = "") -> str:
    name = f"cairn_bench_{uuid.uuid4().hex[:12]}"
    _admin(server, f'CREATE DATABASE "{name}"')
    return urlunsplit(("postgresql+psycopg", urlsplit(server).netloc, f"/{name}", query, ""))


def drop_database(server: str, url: str) -> None:
    _admin(server, f'DROP DATABASE IF EXISTS "{urlsplit(url).path[1:]}" WITH (FORCE)')


# ---- measurements -------------------------------------------------------------------------------------

ASYNC_COMMIT = "options=" + quote("-c synchronous_commit=off")
BACKENDS = ("sqlite", "postgresql", "postgresql, synchronous_commit=off")


def database_for(backend: str, server: str) -> str:
    if backend == "sqlite":
        return "sqlite:///.cairn/cairn.db"
    return fresh_database(server, ASYNC_COMMIT if "synchronous_commit" in backend else "")


def measure(base: Path, backend: str, server: str, rep: int) -> dict[str, Any]:
    url = database_for(backend, server)
    try:
        label = f"{BACKENDS.index(backend)}-{rep}"
        project = C.write_project(base / label, "w1", dag200.PIPELINE, executor="inline")
        config = project / "cairn.toml"
        config.write_text(config.read_text().replace('"sqlite:///.cairn/cairn.db"', f'"{url}"'))
        driver = [sys.executable, "-c", dag200.DRIVER, str(project), "inline", dag200.CHANGED, str(dag200.NEW_K)]
        data: dict[str, Any] = C.run(driver).check().json()
        if not data["cold"]["ok"] or data["cold"]["executed"] != N_NODES:
            raise RuntimeError(f"{backend}: the cold run did not execute every step: {data['cold']}")
        data["overhead_ms"] = (data["cold"]["wall"] - data["user_s"]) / N_NODES * 1e3
    finally:
        if backend != "sqlite":
            drop_database(server, url)
    url = database_for(backend, server)
    try:
        micro = base / f"{BACKENDS.index(backend)}-{rep}-writes"
        micro.mkdir()
        spent = C.run([sys.executable, "-c", WRITES, url, str(micro)]).check().json()
        data["writes_ms"] = {k: v / N_NODES * 1e3 for k, v in spent.items()}
    finally:
        if backend != "sqlite":
            drop_database(server, url)
    return data


def main() -> None:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--postgres-url", default=os.environ.get("CAIRN_TEST_POSTGRES_URL"), help="server admin URL")
    args = p.parse_args()
    n = args.repeat
    C.header("metadata_pg: the 200-node no-op DAG with its metadata on PostgreSQL and on SQLite", n)
    results: dict[str, list[dict[str, Any]]] = {backend: [] for backend in BACKENDS}
    with postgres_server(args.postgres_url) as server, C.workspace("metadata-pg", args.keep) as base:
        for rep in range(n):
            for backend in BACKENDS:  # interleaved, so that every backend sees the same load on the machine
                C.progress(f"{backend} #{rep + 1}/{n}")
                results[backend].append(measure(base, backend, server, rep))

    t = C.Table(
        f"W1 cold and W2 no-change rerun of the 200-node DAG through the API, inline executor, n={n}",
        ["metadata store", "W1 materialize() s", "overhead ms/step", "W2 rerun s", "lease ms", "commit ms",
         "heartbeat ms"],
    )  # fmt: skip
    for backend, runs in results.items():
        t.add(
            backend,
            C.spread([r["cold"]["wall"] for r in runs]),
            C.spread([r["overhead_ms"] for r in runs]),
            C.spread([r["cached"]["wall"] for r in runs], 3),
            C.spread([r["writes_ms"]["lease"] for r in runs], 3),
            C.spread([r["writes_ms"]["commit"] for r in runs], 3),
            C.spread([r["writes_ms"]["heartbeat"] for r in runs], 3),
        )
    t.notes.append(
        "overhead = (materialize() wall - time in the 200 user functions) / 200; it includes writing each "
        "object (put_bytes with fsync) besides the metadata. lease / commit / heartbeat: the metadata writes of "
        "one executed step alone (acquire_lease with its attempt record, commit_materialization with two "
        "inputs, heartbeat_run), 200 in a row in a fresh interpreter, per step."
    )
    t.notes.append(
        "PostgreSQL runs on this machine over loopback TCP: each statement is a round trip, and a commit with "
        "synchronous_commit=on waits for its WAL flush (fsync); SQLite in WAL mode with synchronous=NORMAL "
        "fsyncs only at checkpoints."
    )
    t.print()


if __name__ == "__main__":
    main()
