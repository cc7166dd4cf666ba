"""The metadata database's schema: numbered SQL migration files, applied in order and recorded in a table."""

from __future__ import annotations

import functools
import re
from pathlib import Path

from cairn.errors import StoreError
from cairn.storage.dialect import Cursor, Dialect

_MIGRATION_FILE = re.compile(r"^(\d{4})_\w+\.sql$")


def supported_schema_version() -> int:
    """The newest schema version this cairn knows: the number of its last migration file."""
    return _migrations()[-1][0]


def schema_is_current(cursor: Cursor, dialect: Dialect) -> bool:
    """Whether the database already has the newest schema (read without taking the write lock)."""
    try:
        cursor.execute("SELECT MAX(version) FROM schema_version")
        return bool(cursor.fetchone()[0] == supported_schema_version())
    except dialect.error:
        return False  # a new database: no schema_version table yet


def upgrade_schema(cursor: Cursor, dialect: Dialect) -> None:
    """Apply the migrations the database lacks, in version order; run it inside a write transaction.

    Engines that open a new database together upgrade it one after the other: the write transaction holds
    SQLite's write lock from its start, and PostgreSQL's runs under an advisory lock first. The next one
    then finds the schema current and applies nothing.

    Raises:
        StoreError: The database's schema is newer than this cairn's newest migration.
    """
    if dialect.schema_lock:
        cursor.execute(dialect.schema_lock)
    cursor.execute(
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
    )
    cursor.execute("SELECT MAX(version) FROM schema_version")
    current = cursor.fetchone()[0] or 0
    newest = supported_schema_version()
    if current > newest:
        raise StoreError(
            f"the metadata database {dialect.url} has schema version {current}, but this cairn supports "
            f"versions up to {newest}; upgrade cairn (pip install -U cairn) to use this database"
        )
    for version, migration in _migrations():
        if version > current:
            for statement in dialect.migration_sql(migration.read_text(encoding="utf-8")):
                cursor.execute(statement)
            cursor.execute(
                dialect.sql("INSERT INTO schema_version (version, applied_at) VALUES (?, {now})"), (version,)
            )


@functools.cache
def _migrations() -> list[tuple[int, Path]]:
    """The packaged migration files ``NNNN_name.sql``, in version order (beside this module, as the web UI's
    templates are beside theirs: `importlib.resources` would take 4 ms to import on every command)."""
    found: dict[int, Path] = {}
    folder = Path(__file__).with_name("migrations")
    for entry in folder.iterdir() if folder.is_dir() else ():
        match = _MIGRATION_FILE.match(entry.name)
        if match is None:
            continue
        version = int(match.group(1))
        if version in found:
            raise StoreError(
                f"two metadata migrations have version {version}: {found[version].name} and {entry.name}; "
                "reinstall cairn"
            )
        found[version] = entry
    if not found:
        raise StoreError("the metadata migrations are missing from the installed cairn package; reinstall cairn")
    return sorted(found.items())
