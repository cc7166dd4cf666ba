"""PostgreSQL as the metadata store: URLs, what users see when it cannot be reached, and conflicts retried.

Everything here talks to a real server (tests/postgres.py) or to a port where no server listens.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from cairn.core.records import SUCCEEDED
from cairn.errors import ConfigError, StoreError
from cairn.storage.dialect import Cursor, PostgresDialect, dialect_for_url
from cairn.storage.metadata import MetadataStore, open_metadata
from cairn.testing.metadata import start_run
from tests.conftest import ProjectFactory, cli
from tests.postgres import libpq_url, with_database

PIPELINE = """
from cairn import asset


@asset
def numbers():
    return [1, 2, 3]


@asset
def total(numbers):
    return sum(numbers)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _project(make_project: ProjectFactory, url: str, name: str = "proj") -> Path:
    return make_project(PIPELINE, extra=f'[storage]\ndatabase = "{url}"\n', name=name)


# ---- URLs ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://user:pw@db.internal:6543/cairn",
        "postgresql://user@db.internal/cairn?sslmode=require",
        "postgres://db.internal/cairn",
        "POSTGRESQL+PSYCOPG://user@db.internal/cairn",
    ],
)
def test_postgresql_urls_are_accepted_without_connecting(url: str, tmp_path: Path) -> None:
    dialect = dialect_for_url(url, tmp_path)
    assert isinstance(dialect, PostgresDialect)
    assert dialect.sql("SELECT ? WHERE x LIKE 'a%'") == "SELECT %s WHERE x LIKE 'a%%'"
    assert "clock_timestamp()" in dialect.sql("SELECT {now}")


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("postgresql+psycopg2://user@host/cairn", r"driver 'psycopg2'.*psycopg 3.*postgresql\+psycopg://"),
        ("postgresql+asyncpg://user@host/cairn", r"driver 'asyncpg'"),
        ("postgresql+psycopg://user@host", r"names no database"),
        ("postgresql+psycopg://user@host/", r"names no database"),
        ("postgresql+psycopg://user@host:port/cairn", r"invalid port"),
        ("postgresql+psycopg://user@host/cairn#x", r"'#' part"),
    ],
)
def test_malformed_postgresql_urls_say_how_to_write_them(url: str, problem: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=problem):
        open_metadata(url, tmp_path)


def test_a_password_never_appears_in_messages(tmp_path: Path) -> None:
    port = _free_port()
    for url in (
        f"postgresql+psycopg://cairn:s3cret-pw@127.0.0.1:{port}/cairn",
        f"postgresql+psycopg://cairn@127.0.0.1:{port}/cairn?password=s3cret-pw",
    ):
        with pytest.raises(StoreError) as caught:
            open_metadata(url, tmp_path)
        assert "s3cret-pw" not in str(caught.value)
        assert "***" in str(caught.value)


# ---- what the command line says -----------------------------------------------------------------------


def test_a_postgresql_url_without_psycopg_installed_names_the_extra(make_project: ProjectFactory) -> None:
    """The store error of a missing driver (exit code 1), not a traceback; psycopg is hidden, not faked."""
    project = _project(make_project, "postgresql+psycopg://cairn@127.0.0.1/cairn")
    script = (
        "import sys; sys.modules['psycopg'] = None; "
        f"sys.argv = ['cairn', '-C', {str(project)!r}, 'status']; "
        "from cairn.cli.main import main; main()"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "psycopg" in done.stderr and "pip install 'cairn[postgres]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_server_that_refuses_connections_is_a_clear_store_error(make_project: ProjectFactory) -> None:
    port = _free_port()
    project = _project(make_project, f"postgresql+psycopg://cairn:pw@127.0.0.1:{port}/cairn")
    done = cli("-C", str(project), "run")
    assert done.returncode == 1, done.stderr
    assert "cannot connect to the metadata database" in done.stderr
    assert f"running at 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr and ":pw@" not in done.stderr


@pytest.fixture
def password_urls(postgres_url: str) -> Iterator[tuple[str, str]]:
    """A login role with a password that may use the test's database: ``(URL with it, URL with a wrong one)``."""
    import psycopg

    parts = urlsplit(postgres_url)
    database = parts.path[1:]
    role = f"cairn_user_{database[-12:]}"
    with psycopg.connect(libpq_url(postgres_url), autocommit=True) as db:
        db.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'right-pw'")
        db.execute(f'GRANT ALL ON DATABASE "{database}" TO {role}')
        db.execute(f"GRANT ALL ON SCHEMA public TO {role}")

    def url(password: str) -> str:
        return with_database(f"postgresql://{role}:{password}@{parts.hostname}:{parts.port}/", database)

    try:
        try:
            psycopg.connect(libpq_url(url("wrong-pw"))).close()
        except psycopg.OperationalError:
            yield url("right-pw"), url("wrong-pw")
        else:
            pytest.skip("the test server lets loopback connections in without a password")
    finally:
        with psycopg.connect(libpq_url(postgres_url), autocommit=True) as db:
            db.execute(f"DROP OWNED BY {role}")
            db.execute(f"DROP ROLE {role}")


def test_a_wrong_password_is_a_clear_store_error_and_loses_nothing(
    make_project: ProjectFactory, password_urls: tuple[str, str]
) -> None:
    right, wrong = password_urls
    project = _project(make_project, right)
    first = cli("-C", str(project), "run", "--json")
    assert first.returncode == 0, first.stderr
    run_id = json.loads(first.stdout)["run_id"]

    _project(make_project, wrong)
    refused = cli("-C", str(project), "run")
    assert refused.returncode == 1, refused.stderr
    assert "password authentication failed" in refused.stderr and "PGPASSWORD" in refused.stderr
    assert "wrong-pw" not in refused.stderr and "Traceback" not in refused.stderr

    _project(make_project, right)
    again = cli("-C", str(project), "run", "--json")
    assert again.returncode == 0, again.stderr
    assert {s["status"] for s in json.loads(again.stdout)["steps"]} == {"cached"}
    with open_metadata(right, project) as store:
        first_run = store.get_run(run_id)
        assert first_run is not None and first_run.status == SUCCEEDED
        assert len(store.list_runs()) == 2


def test_a_database_that_does_not_exist_says_how_to_create_it(
    make_project: ProjectFactory, postgres_server: str
) -> None:
    project = _project(make_project, with_database(postgres_server, "cairn_never_created"))
    done = cli("-C", str(project), "status")
    assert done.returncode == 1, done.stderr
    assert "CREATE DATABASE cairn_never_created" in done.stderr


def test_a_project_runs_on_postgresql_end_to_end(make_project: ProjectFactory, postgres_url: str) -> None:
    project = _project(make_project, postgres_url)
    done = cli("-C", str(project), "run", "--json")
    assert done.returncode == 0, done.stderr
    assert {s["asset"]: s["status"] for s in json.loads(done.stdout)["steps"]} == {
        "numbers": "executed",
        "total": "executed",
    }
    status = cli("-C", str(project), "status")
    assert status.returncode == 0 and "total" in status.stdout
    runs = cli("-C", str(project), "runs")
    assert runs.returncode == 0 and json.loads(done.stdout)["run_id"] in runs.stdout


# ---- conflicts between transactions are retried inside the store ---------------------------------------


def test_a_deadlock_between_two_engines_is_retried_and_never_surfaces(postgres_url: str, tmp_path: Path) -> None:
    """Two transactions lock the same two rows in opposite orders: PostgreSQL aborts one of them as a
    deadlock, and the store runs that one again instead of raising."""
    setup = open_metadata(postgres_url, tmp_path)
    start_run(setup, "a")
    start_run(setup, "b")
    setup.close()
    barrier = threading.Barrier(2)
    tries: dict[str, int] = {"a": 0, "b": 0}
    errors: list[BaseException] = []

    def lock_both(store: MetadataStore, first: str, second: str) -> None:
        def body(cur: Cursor) -> None:
            tries[first] += 1
            update = store._sql("UPDATE runs SET selection = selection || ? WHERE run_id = ?")
            cur.execute(update, (first, first))
            if tries[first] == 1:
                barrier.wait(timeout=30)  # both hold their first row now
            cur.execute(update, (first, second))

        try:
            store._transaction(f"lock {first} then {second}", body)
        except BaseException as exc:
            errors.append(exc)
        finally:
            store.close()

    threads = [
        threading.Thread(target=lock_both, args=(open_metadata(postgres_url, tmp_path), "a", "b")),
        threading.Thread(target=lock_both, args=(open_metadata(postgres_url, tmp_path), "b", "a")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert sorted(tries.values()) == [1, 2], tries  # exactly one was run again
    with open_metadata(postgres_url, tmp_path) as store:
        selections = dict(store._rows("test", "SELECT run_id, selection FROM runs"))
    # Each transaction appended its name to both rows exactly once (the aborted try left no trace).
    assert sorted(selections["a"][1:]) == sorted(selections["b"][1:]) == ["a", "b"]


def test_sqlite_still_busy_after_its_timeout_is_retried_and_never_surfaces(tmp_path: Path) -> None:
    """Another process holds SQLite's write lock for longer than the store's busy timeout (shortened here to
    0.1 s): the store's write waits it out through retries instead of failing with "database is locked"."""
    path = tmp_path / "meta.db"
    store = open_metadata(f"sqlite:///{path}", tmp_path)
    start_run(store, "run-1")
    store._cursor.execute("PRAGMA busy_timeout=100")
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")

    def release_later() -> None:
        time.sleep(0.6)
        holder.execute("COMMIT")

    releaser = threading.Thread(target=release_later)
    releaser.start()
    try:
        store.finish_run("run-1", SUCCEEDED)
    finally:
        releaser.join()
        holder.close()
    run = store.get_run("run-1")
    assert run is not None and run.status == SUCCEEDED
    store.close()


def test_psycopg_is_not_imported_for_an_sqlite_project(tmp_path: Path) -> None:
    code = (
        "import sys; from cairn.storage.metadata import open_metadata; "
        f"open_metadata('sqlite:///m.db', {str(tmp_path)!r}).close(); print('psycopg' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr
