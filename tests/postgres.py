"""A real PostgreSQL server for the tests, and a fresh database on it for each test that asks.

The server is ``$CAIRN_TEST_POSTGRES_URL`` when set (a URL whose role may create databases, e.g. the
cluster that `.ci/run` starts). Otherwise a throwaway cluster is started for the session from the
machine's server binaries (``initdb``/``pg_ctl``, run as the ``postgres`` user when the tests run as
root) in a temporary folder, listening on a free loopback port with password authentication, and
stopped at the end. Without server binaries the tests that need PostgreSQL are skipped, unless
``$CAIRN_REQUIRE_POSTGRES`` is set: then a missing server is an error.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

URL_VARIABLE = "CAIRN_TEST_POSTGRES_URL"
REQUIRE_VARIABLE = "CAIRN_REQUIRE_POSTGRES"
# Settings of a throwaway cluster: nothing in it must survive a power cut.
_FAST = ("fsync=off", "synchronous_commit=off", "full_page_writes=off", "max_connections=200")


def server_binaries() -> Path | None:
    """The folder with ``initdb`` and ``pg_ctl``: Debian's /usr/lib/postgresql/N/bin (newest), else the PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def with_database(url: str, database: str) -> str:
    """The same server URL, naming another database; always in cairn's ``postgresql+psycopg://`` spelling."""
    parts = urlsplit(url)
    return urlunsplit(("postgresql+psycopg", parts.netloc, f"/{database}", parts.query, ""))


def libpq_url(url: str) -> str:
    """A cairn URL as psycopg itself takes it (``postgresql://``)."""
    return urlunsplit(("postgresql", *urlsplit(url)[1:]))


class Cluster:
    """A PostgreSQL cluster in a temporary folder, owned by the ``postgres`` user when running as root."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.folder = Path(tempfile.mkdtemp(prefix="cairn-test-pg-"))
        self.data = self.folder / "data"
        self.password = secrets.token_hex(12)
        self.port = 0
        self._as_root = os.geteuid() == 0
        self._watchdog: subprocess.Popen[bytes] | None = None
        if self._as_root:
            shutil.chown(self.folder, "postgres")

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self._as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    def start(self) -> str:
        """initdb and start the server on a free loopback port; return the admin URL."""
        pwfile = self.folder / "pw"
        pwfile.write_text(self.password + "\n", encoding="utf-8")
        if self._as_root:
            shutil.chown(pwfile, "postgres")
        done = self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", f"--pwfile={pwfile}", "-E", "UTF8", "--no-sync",
            "--auth-local=trust", "--auth-host=scram-sha-256",
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr}")
        for _ in range(5):  # another process may take the free port before the server binds it
            self.port = _free_port()
            options = " ".join(
                [f"-c port={self.port}", "-c listen_addresses=127.0.0.1", f"-c unix_socket_directories={self.folder}"]
                + [f"-c {setting}" for setting in _FAST]
            )
            done = self._run(
                "pg_ctl", "-D", str(self.data), "-l", str(self.folder / "log"), "-w", "-o", options, "start"
            )
            if done.returncode == 0:
                self._watch()
                return f"postgresql+psycopg://postgres:{self.password}@127.0.0.1:{self.port}/postgres"
        log = (self.folder / "log").read_text(encoding="utf-8", errors="replace")
        raise RuntimeError(f"the PostgreSQL test server did not start: {done.stderr}\n{log}")

    def _watch(self) -> None:
        """Stop the server and remove its folder once this test process is gone, even if it was killed."""
        stop = " ".join(
            (["runuser", "-u", "postgres", "--"] if self._as_root else [])
            + [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"]
        )
        script = f'while [ -d /proc/{os.getpid()} ]; do sleep 2; done; {stop} >/dev/null 2>&1; rm -rf "{self.folder}"'
        self._watchdog = subprocess.Popen(
            ["sh", "-c", script],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)
        if self._watchdog is not None:
            self._watchdog.kill()
            self._watchdog.wait()


def _version(initdb: str) -> list[int]:
    """The server version of /usr/lib/postgresql/<version>/bin/initdb, for sorting."""
    return [int(n) for n in Path(initdb).parts[-3].split(".") if n.isdigit()]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The admin URL of a PostgreSQL server for the whole session."""
    url = os.environ.get(URL_VARIABLE)
    if url:
        yield url
        return
    bindir = server_binaries()
    if bindir is None:
        message = (
            "no PostgreSQL server binaries (initdb, pg_ctl) on this machine; install the 'postgresql' package "
            f"or set {URL_VARIABLE} to a server URL"
        )
        if os.environ.get(REQUIRE_VARIABLE):
            pytest.fail(f"{REQUIRE_VARIABLE} is set but {message}")
        pytest.skip(message)
    cluster = Cluster(bindir)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


class Databases:
    """Creates fresh databases on the test server and drops them (forcing their connections closed)."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url

    def _admin(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(libpq_url(self.server_url), autocommit=True) as admin:
            admin.execute(statement)

    def create(self) -> str:
        """A new, empty database; returns its ``postgresql+psycopg://`` URL."""
        name = f"cairn_test_{uuid.uuid4().hex[:16]}"
        self._admin(f'CREATE DATABASE "{name}"')
        return with_database(self.server_url, name)

    def drop(self, url: str) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{urlsplit(url).path[1:]}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_databases(postgres_server: str) -> Databases:
    """Makes databases on the session's server, for fixtures broader than one test."""
    return Databases(postgres_server)


@pytest.fixture
def postgres_url(postgres_databases: Databases) -> Iterator[str]:
    """A new, empty database for this test (``postgresql+psycopg://...``), dropped afterwards."""
    url = postgres_databases.create()
    try:
        yield url
    finally:
        postgres_databases.drop(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """A project's ``[storage] database``: its own SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return "sqlite:///.cairn/cairn.db"
    return str(request.getfixturevalue("postgres_url"))
