"""Everything that differs between the SQL databases under the metadata store, and the URLs that name them."""

from __future__ import annotations

import os
import select
import sqlite3
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any, Protocol, cast
from urllib.parse import SplitResult, parse_qs, parse_qsl, unquote, urlsplit, urlunsplit

from cairn.errors import ConfigError, StoreError

# The DB-API subset the metadata store uses; sqlite3 and psycopg connections both provide it.


class Cursor(Protocol):
    """A DB-API cursor."""

    @property
    def rowcount(self) -> int: ...

    def execute(self, sql: str, params: Any = ..., /) -> object: ...

    def executemany(self, sql: str, params: Any, /) -> object: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def close(self) -> None: ...


class Connection(Protocol):
    """A DB-API connection in autocommit mode; transactions are opened with explicit statements."""

    def cursor(self) -> Cursor: ...

    def close(self) -> None: ...


_ACCEPTED = (
    "'sqlite:///relative/path.db' (relative to the project), 'sqlite:////absolute/path.db', "
    "'sqlite:///:memory:' or 'postgresql+psycopg://user:password@host:port/database'"
)


class Dialect:
    """The SQL differences of one database, and how to connect to it.

    Queries are written once, with ``?`` placeholders, a ``{now}`` token for the database clock and a
    ``{skip_locked}`` token after a ``SELECT ... LIMIT`` that claims a row; `sql` rewrites them for the
    database. Queries must not contain ``?`` or these tokens inside literals.
    """

    name: str = ""
    # The URL as shown in messages: never with its password.
    url: str = ""
    # SQL expression for the current time as epoch seconds, on the database's clock.
    now_sql: str = ""
    # Statement that opens a transaction which takes the write lock at once (SQLite) or row locks (PostgreSQL).
    begin_write: str = "BEGIN"
    # Whether one statement outside a transaction is atomic and safe to retry, so that it needs no BEGIN.
    atomic_statements: bool = False
    # Statement run first in the transaction that upgrades the schema, so that engines upgrade one at a time.
    schema_lock: str = ""
    # Row locking of a SELECT that claims one free row: lock it and pass over rows other transactions hold.
    skip_locked: str = ""
    # Column type of an auto-increment integer primary key, substituted for @AUTO_ID@ in migrations.
    auto_id: str = ""
    placeholder: str = "?"
    # The driver's base exception class (DB-API `Error`).
    error: type[Exception] = Exception

    def __init__(self) -> None:
        self._translated: dict[str, str] = {}

    def connect(self) -> Connection:
        """Open a new connection in autocommit mode with the session settings cairn relies on."""
        raise NotImplementedError

    def is_transient(self, exc: Exception) -> bool:
        """Whether an error is a conflict between concurrent transactions that running the same work again fixes."""
        return False

    def lost(self, exc: Exception, connection: Connection) -> bool:
        """Whether an error of a statement on `connection` means that the connection is gone."""
        return False

    def alive(self, connection: Connection) -> bool:
        """Whether a connection not in use looks alive, found out without a round trip to the server."""
        return True

    def trouble(self, exc: Exception) -> str | None:
        """What an error says about the database's own storage (its disk full or failing, its file damaged)
        and how to fix it; None when it says nothing of the kind."""
        return None

    def sql(self, query: str) -> str:
        """Rewrite a query written with ``?``, ``{now}`` and ``{skip_locked}`` for this database (cached per text)."""
        text = self._translated.get(query)
        if text is None:
            text = query.replace("{now}", self.now_sql).replace("{skip_locked}", self.skip_locked)
            if self.placeholder != "?":
                text = text.replace("%", "%%").replace("?", self.placeholder)
            self._translated[query] = text
        return text

    def migration_sql(self, script: str) -> list[str]:
        """Split a migration script into statements for this database; ``--`` comments are dropped."""
        lines = [line.split("--", 1)[0] for line in script.splitlines()]
        text = "\n".join(lines).replace("@AUTO_ID@", self.auto_id)
        return [statement.strip() for statement in text.split(";") if statement.strip()]


class SQLiteDialect(Dialect):
    """SQLite through the standard library: WAL journal, NORMAL sync, 30 s busy timeout, foreign keys."""

    name = "sqlite"
    # julianday has millisecond resolution; 2440587.5 is the julian day of the Unix epoch.
    now_sql = "((julianday('now') - 2440587.5) * 86400.0)"
    begin_write = "BEGIN IMMEDIATE"
    # AUTOINCREMENT: ids of deleted rows are never reused, so an id names one materialization forever.
    auto_id = "INTEGER PRIMARY KEY AUTOINCREMENT"
    error = sqlite3.Error

    def __init__(self, url: str, path: Path | None) -> None:
        super().__init__()
        self.url = url
        self.path = path  # None for an in-memory database

    def connect(self) -> Connection:
        """Open the database file (creating its folder) or a fresh in-memory database."""
        target = ":memory:"
        if self.path is not None:
            target = str(self.path)
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"cannot create the folder of the metadata database {self.path}: {exc}; "
                    "check the path of [storage] database in cairn.toml and its permissions"
                ) from exc
        try:
            connection = sqlite3.connect(
                target, timeout=30.0, isolation_level=None, check_same_thread=False, cached_statements=256
            )
        except sqlite3.Error as exc:
            raise StoreError(
                f"cannot open the metadata database {target}: {exc}; check that the path is a writable file"
            ) from exc
        try:
            cursor = connection.cursor()
            if self.path is not None:
                _use_wal(cursor)
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()
        except sqlite3.Error as exc:
            connection.close()
            hint = self.trouble(exc) or "it may not be an SQLite file, or it is locked by another program"
            raise StoreError(f"cannot use {target} as a metadata database: {exc}; {hint}") from exc
        return connection

    def is_transient(self, exc: Exception) -> bool:
        """SQLITE_BUSY or SQLITE_LOCKED: another connection held a lock for longer than the busy timeout."""
        code = getattr(exc, "sqlite_errorcode", None)
        return isinstance(exc, sqlite3.OperationalError) and code is not None and code & 0xFF in (5, 6)

    def trouble(self, exc: Exception) -> str | None:
        """SQLITE_FULL, SQLITE_IOERR, SQLITE_CORRUPT and SQLITE_NOTADB, told by their codes (or their messages)."""
        if not isinstance(exc, sqlite3.Error) or self.path is None:
            return None
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
        text = str(exc)
        path = self.path
        if code == 13 or "disk is full" in text:
            return (
                f"the disk holding {path} is full: free space on it, then run the command again "
                "(what was committed before is kept; a run resumes from it)"
            )
        if code == 10 or "disk I/O error" in text:
            return (
                f"reading or writing {path} failed with an I/O error: check its disk and file system "
                "(the kernel log says more), then run the command again (a run resumes from what was committed)"
            )
        if code in (11, 26) or "malformed" in text or "not a database" in text:
            return (
                f"the file is damaged. Restore it from a backup, or move it aside and start a new one: "
                f"`mv {path} {path}.damaged` (and its -wal and -shm files, if any); the next `cairn run` runs "
                "the steps again, and the objects already in the artifact store are kept and reused byte for byte. "
                f"`sqlite3 {path}.damaged .recover` may salvage the old records"
            )
        return None


# Advisory lock key of schema upgrades (any fixed 64-bit number; advisory locks are per database).
_SCHEMA_LOCK_KEY = 0x636169726E  # "cairn"
# SQLSTATEs of conflicts between concurrent transactions: serialization failure, deadlock, lock not available.
_PG_TRANSIENT = frozenset({"40001", "40P01", "55P03"})
# SQLSTATEs of a session the server ended: terminated by an administrator, crash or shutdown of the server,
# idle in a transaction for too long.
_PG_SESSION_ENDED = frozenset({"57P01", "57P02", "57P03", "25P03"})
_PG_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")


class PostgresDialect(Dialect):
    """PostgreSQL through psycopg 3 (imported only here): autocommit connections, the server's clock, row locks.

    Writes run at READ COMMITTED with row locks; deadlocks and serialization failures are reported as
    transient, so the store runs the transaction again instead of failing. A session that sits inside a
    transaction for a minute (a frozen engine) is ended by the server, so its row locks cannot block others.
    """

    name = "postgresql"
    now_sql = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)"
    begin_write = "BEGIN"
    atomic_statements = True
    schema_lock = f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK_KEY})"
    skip_locked = " FOR UPDATE SKIP LOCKED"
    # An identity column: like AUTOINCREMENT, a value is never handed out twice.
    auto_id = "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"
    placeholder = "%s"

    def __init__(self, url: str, conninfo: str, where: str, database: str, given: Collection[str]) -> None:
        super().__init__()
        self.url = url
        self._conninfo = conninfo
        self._where = where
        self._database = database
        # Defaults for what the URL leaves out: the name the server shows (pg_stat_activity), a bound on
        # connecting, and TCP keepalives, so that a connection whose peer vanished is found dead in about a
        # minute instead of the operating system's two hours.
        defaults = {
            "application_name": "cairn",
            "connect_timeout": 10,
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
        }
        self._options: dict[str, Any] = {name: value for name, value in defaults.items() if name not in given}
        try:
            import psycopg
        except ImportError as exc:
            raise StoreError(
                f"the metadata database {url} is PostgreSQL, which cairn reaches through psycopg 3, and psycopg "
                f"is not installed ({exc}); install the 'postgres' extra: pip install 'cairn[postgres]'"
            ) from exc
        self.error = psycopg.Error

    def connect(self) -> Connection:
        """Connect in autocommit mode; a refused connection or a wrong password is a StoreError naming the fix.

        A session that the server ends while it is being set up (terminated, the server shutting down) is
        made again, a few times, as the store replaces any lost connection.
        """
        import psycopg

        attempt = 0
        while True:
            attempt += 1
            try:
                connection = psycopg.connect(self._conninfo, autocommit=True, **self._options)
            except psycopg.Error as exc:
                if attempt < 3 and getattr(exc, "sqlstate", None) in _PG_SESSION_ENDED:
                    continue
                raise StoreError(self._cannot_connect(exc)) from exc
            try:
                connection.execute("SET idle_in_transaction_session_timeout = 60000")
                return cast(Connection, connection)
            except psycopg.Error as exc:
                again = attempt < 3 and self.lost(exc, cast(Connection, connection))
                connection.close()
                if not again:
                    raise StoreError(f"cannot set up a session on the metadata database {self.url}: {exc}") from exc

    def is_transient(self, exc: Exception) -> bool:
        return getattr(exc, "sqlstate", None) in _PG_TRANSIENT

    def lost(self, exc: Exception, connection: Connection) -> bool:
        """psycopg marks a connection broken when the socket failed; the server says that it ends a session
        (terminated, shutting down, idle in a transaction too long) before it closes the socket, and a batch
        of statements cut off can leave a connection stuck in pipeline mode."""
        import psycopg

        conn = cast(psycopg.Connection[Any], connection)
        sqlstate = getattr(exc, "sqlstate", None) or ""
        return isinstance(exc, psycopg.OperationalError) and (
            conn.broken
            or conn.closed
            or sqlstate in _PG_SESSION_ENDED
            or sqlstate.startswith("08")  # connection exception
            or conn.pgconn.pipeline_status != psycopg.pq.PipelineStatus.OFF
        )

    def alive(self, connection: Connection) -> bool:
        """The server sends an idle session in autocommit mode nothing but notices, or its goodbye: a fatal
        error (the session was terminated, the server shuts down) and the end of the stream. So a socket with
        nothing to read is alive; one with something is asked with an empty query (rarely needed)."""
        import psycopg

        conn = cast(psycopg.Connection[Any], connection)
        if conn.broken or conn.closed or conn.pgconn.pipeline_status != psycopg.pq.PipelineStatus.OFF:
            return False
        try:
            if not select.select([conn.pgconn.socket], [], [], 0)[0]:
                return True
            conn.execute("")
        except (psycopg.Error, OSError, ValueError):
            return False
        return True

    def _cannot_connect(self, exc: Exception) -> str:
        text = " ".join(str(exc).split())
        lowered = text.lower()
        if "password" in lowered:
            hint = (
                "check the user and password in [storage] database of cairn.toml (the password may also come "
                "from the PGPASSWORD variable or ~/.pgpass)"
            )
        elif f'database "{self._database.lower()}" does not exist' in lowered:
            hint = f"create the database first, as an administrator: CREATE DATABASE {self._database} OWNER <user>"
        elif "role" in lowered and "does not exist" in lowered:
            hint = "create the user first, as an administrator: CREATE ROLE <user> LOGIN PASSWORD '...'"
        elif "pg_hba.conf" in lowered:
            hint = "the server refuses this user, database or host: allow it in the server's pg_hba.conf"
        else:
            hint = (
                f"check that a PostgreSQL server is running at {self._where} and accepts connections from this "
                "machine, and that [storage] database in cairn.toml names it"
            )
        return f"cannot connect to the metadata database {self.url}: {text}; {hint}"


def dialect_for_url(url: str, project_dir: str | os.PathLike[str]) -> Dialect:
    """Parse a database URL (SQLAlchemy's spelling) into the dialect that serves it.

    Args:
        url: ``sqlite:///relative.db``, ``sqlite:////absolute.db``, ``sqlite:///:memory:``, or
            ``postgresql+psycopg://user:password@host:port/database`` (``postgresql://`` too; libpq
            parameters such as ``?sslmode=require`` are passed on).
        project_dir: The folder that relative SQLite paths are resolved against.

    Raises:
        ConfigError: The URL is malformed or names a database this cairn cannot use.
        StoreError: The URL names PostgreSQL and psycopg is not installed.
    """
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ConfigError(f"database URL {url!r} has no scheme; use {_ACCEPTED}")
    if scheme in _PG_SCHEMES or scheme.startswith("postgresql+"):
        return _postgres(scheme, rest)
    if scheme != "sqlite":
        raise ConfigError(f"database URL {url!r} has the unsupported scheme {scheme!r}; use {_ACCEPTED}")
    if "?" in rest:
        raise ConfigError(f"database URL {url!r}: query parameters are not supported; use {_ACCEPTED}")
    if rest in ("", "/:memory:"):
        return SQLiteDialect(url, None)
    if not rest.startswith("/") or rest == "/":
        raise ConfigError(f"database URL {url!r} has no file path after 'sqlite:///'; use {_ACCEPTED}")
    path = Path(rest[1:])
    if not path.is_absolute():
        path = Path(project_dir) / path
    return SQLiteDialect(url, path)


def _postgres(scheme: str, rest: str) -> PostgresDialect:
    """The dialect of a PostgreSQL URL, checked before anything connects."""
    parts = urlsplit("postgresql://" + rest)
    shown = _redacted(scheme, parts)
    example = "'postgresql+psycopg://user:password@host:5432/cairn'"
    if scheme not in _PG_SCHEMES:
        raise ConfigError(
            f"database URL {shown!r} asks for the driver {scheme.partition('+')[2]!r}; cairn reaches PostgreSQL "
            f"through psycopg 3: write it as {example}"
        )
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"database URL {shown!r} has an invalid port; write it as {example}") from None
    database = unquote(parts.path[1:])
    if not database or "/" in database:
        raise ConfigError(f"database URL {shown!r} names no database after the host; write it as {example}")
    if parts.fragment:
        raise ConfigError(f"database URL {shown!r} has a '#' part, which means nothing here; write it as {example}")
    query = parse_qs(parts.query)
    where = f"{parts.hostname or 'the local socket'}:{port or 5432}"
    return PostgresDialect(shown, "postgresql://" + rest, where, database, frozenset(query))


def _redacted(scheme: str, parts: SplitResult) -> str:
    """The URL for messages: the password (in the user part or a ``password=`` parameter) replaced by ``***``."""
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username or ''}:***@{netloc.rpartition('@')[2]}"
    query = "&".join(
        f"{name}=***" if name.lower() == "password" else f"{name}={value}"
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
    )
    return urlunsplit((scheme, netloc, parts.path, query, parts.fragment))


def _use_wal(cursor: Any) -> None:
    """Switch a database file to WAL mode once (the mode is stored in the file).

    Two engines creating the same new database can collide on the switch, which needs an exclusive lock
    that SQLite does not always wait for: retry briefly instead of failing the second engine.
    """
    for attempt in range(50):
        try:
            if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
                return
            cursor.execute("PRAGMA journal_mode=WAL").fetchall()
            return
        except sqlite3.OperationalError:
            if attempt == 49:
                raise
            time.sleep(0.05)
