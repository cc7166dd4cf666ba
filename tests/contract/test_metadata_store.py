"""The metadata store contract, run over every backend, plus the database URLs `open_metadata` accepts."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from cairn.errors import ConfigError, StoreError
from cairn.storage import schema
from cairn.storage.metadata import open_metadata
from cairn.testing.metadata import MetadataStoreContract, StoreOpener, start_run

# The backends the contract runs over; a new backend joins by adding its URL here.
BACKENDS = {
    "memory": "sqlite:///:memory:",
    "sqlite": "sqlite:///.cairn/cairn.db",
    "postgresql": None,  # a fresh database on the test server (tests/postgres.py)
}


class TestMetadataStore(MetadataStoreContract):
    @pytest.fixture(params=list(BACKENDS))
    def open_store(self, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreOpener]:
        url = BACKENDS[request.param] or request.getfixturevalue("postgres_url")
        with StoreOpener(url, tmp_path) as opener:
            yield opener


def test_a_relative_sqlite_path_is_under_the_project_and_its_folder_is_created(tmp_path: Path) -> None:
    with open_metadata("sqlite:///state/deep/meta.db", tmp_path) as store:
        store.now()
    assert (tmp_path / "state" / "deep" / "meta.db").is_file()


def test_an_absolute_sqlite_path_uses_wal_journal(tmp_path: Path) -> None:
    path = tmp_path / "abs" / "meta.db"
    with open_metadata(f"sqlite:///{path}", "/nonexistent-project"):
        pass
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        connection.close()


@pytest.mark.parametrize(
    "url", ["mysql://host/db", "cairn.db", "sqlite:///", "sqlite://host/x.db", "sqlite:///x.db?mode=ro"]
)
def test_other_urls_are_refused_naming_the_accepted_forms(url: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sqlite:///relative/path\.db.*sqlite:////absolute/path\.db"):
        open_metadata(url, tmp_path)


def _with_extra_migration(monkeypatch: pytest.MonkeyPatch, folder: Path, sql: str) -> int:
    """Make cairn see one more migration file after its packaged ones; return its version."""
    packaged = schema._migrations()
    version = packaged[-1][0] + 1
    extra = folder / f"{version:04d}_extra.sql"
    extra.write_text(sql, encoding="utf-8")
    monkeypatch.setattr(schema, "_migrations", lambda: [*packaged, (version, extra)])
    return version


def test_an_older_database_is_upgraded_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with open_metadata("sqlite:///meta.db", tmp_path) as store:
        start_run(store, "run-1")
    version = _with_extra_migration(
        monkeypatch, tmp_path, "CREATE TABLE extra (x INTEGER);\nINSERT INTO extra VALUES (7)"
    )
    with open_metadata("sqlite:///meta.db", tmp_path) as store:
        assert store.get_run("run-1") is not None
        assert store._rows("test", "SELECT MAX(version) FROM schema_version")[0][0] == version
        assert store._rows("test", "SELECT x FROM extra") == [(7,)]


def test_a_failing_migration_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    open_metadata("sqlite:///meta.db", tmp_path).close()
    _with_extra_migration(monkeypatch, tmp_path, "CREATE TABLE extra (x INTEGER);\nINSERT INTO nowhere VALUES (1)")
    with pytest.raises(StoreError, match=r"upgrade the schema.*nowhere"):
        open_metadata("sqlite:///meta.db", tmp_path)
    monkeypatch.undo()
    with open_metadata("sqlite:///meta.db", tmp_path) as store:
        assert store._rows("test", "SELECT MAX(version) FROM schema_version")[0][0] == schema.supported_schema_version()
        tables = store._rows("test", "SELECT name FROM sqlite_master WHERE name = 'extra'")
        assert tables == []


def test_a_database_made_before_pool_slots_is_upgraded_and_keeps_its_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    """A database at schema version 2 (before shared pool slots) gains them, on SQLite and PostgreSQL alike."""
    packaged = schema._migrations()
    monkeypatch.setattr(schema, "_migrations", lambda: packaged[:2])
    with open_metadata(database_url, tmp_path) as store:
        start_run(store, "run-1")
        assert store._rows("test", "SELECT MAX(version) FROM schema_version") == [(2,)]
    monkeypatch.undo()
    with open_metadata(database_url, tmp_path) as store:
        assert store._rows("test", "SELECT MAX(version) FROM schema_version") == [(packaged[-1][0],)]
        assert store.get_run("run-1") is not None
        assert store.acquire_pool_slot("db", 1, "run-1", "host:1", ttl_s=600) is not None
