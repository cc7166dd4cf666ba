"""Everything that differs between the SQL databases under the metadata store, and the URLs that name them."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Protocol

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
    "'sqlite:///:memory:' or 'postgresql+psycopg://user@host/db'"
)


class Dialect:
    """The SQL differences of one database, and how to connect to it.

    Queries are written once, with ``?`` placeholders and a ``{now}`` token for the database clock;
    `sql` rewrites them for the database. Queries must not contain ``?`` or ``{now}`` inside literals.
    """

    name: str = ""
    url: str = ""
    # SQL expression for the current time as epoch seconds, on the database's clock.
    now_sql: str = ""
    # Statement that opens a transaction which takes the write lock at once.
    begin_write: str = "BEGIN"
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

    def sql(self, query: str) -> str:
        """Rewrite a query written with ``?`` and ``{now}`` for this database (cached per query text)."""
        text = self._translated.get(query)
        if text is None:
            text = query.replace("{now}", self.now_sql)
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
            raise StoreError(
                f"cannot use {target} as a metadata database: {exc}; "
                "it may not be an SQLite file, or it is locked by another program"
            ) from exc
        return connection


def dialect_for_url(url: str, project_dir: str | os.PathLike[str]) -> Dialect:
    """Parse a database URL (SQLAlchemy's spelling) into the dialect that serves it.

    Args:
        url: ``sqlite:///relative.db``, ``sqlite:////absolute.db``, ``sqlite:///:memory:``, or a
            PostgreSQL URL (not supported yet).
        project_dir: The folder that relative SQLite paths are resolved against.

    Raises:
        ConfigError: The URL is malformed or names a database this cairn cannot use.
    """
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ConfigError(f"database URL {url!r} has no scheme; use {_ACCEPTED}")
    if scheme in ("postgresql", "postgres") or scheme.startswith("postgresql+"):
        raise ConfigError(
            f"database URL {url!r} names PostgreSQL, which needs the 'postgres' extra "
            "(pip install 'cairn[postgres]') and PostgreSQL support that this version of cairn does not "
            "include yet; use an SQLite URL such as 'sqlite:///.cairn/cairn.db'"
        )
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
