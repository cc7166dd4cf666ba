"""One connection to the metadata database: reads, and write transactions that run again after a conflict."""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

from cairn.errors import StoreError
from cairn.storage.dialect import Cursor, Dialect

T = TypeVar("T")

# Tries of a transaction that conflicted with a concurrent one (each SQLite try waits up to its busy timeout).
_ATTEMPTS = 10


class Database:
    """A DB-API connection in autocommit mode, used from one thread; the base of the metadata store's records.

    Every write is one short transaction. On SQLite it takes the database's write lock first, so concurrent
    engines serialize instead of deadlocking; on PostgreSQL it takes row locks, and a deadlock or a
    serialization failure between engines makes the transaction run again rather than fail. Either way a
    conflict that outlasts the waiting is tried again with backoff, so it slows a run down instead of
    reaching the user.
    """

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self._connection = dialect.connect()
        self._cursor: Cursor = self._connection.cursor()
        self._closed = False

    def close(self) -> None:
        """Close the connection; further calls fail. Closing twice is harmless."""
        if not self._closed:
            self._closed = True
            self._cursor.close()
            self._connection.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def now(self) -> float:
        """Epoch seconds on the database's clock."""
        return float(self._rows("read the database clock", "SELECT {now}")[0][0])

    def _sql(self, query: str) -> str:
        return self._dialect.sql(query)

    def _rows(self, what: str, query: str, params: Sequence[Any] = ()) -> list[Any]:
        """Run one read statement outside a transaction and fetch all its rows."""
        text = self._dialect.sql(query)

        def read(cur: Cursor) -> list[Any]:
            cur.execute(text, params)
            return cur.fetchall()

        return self._retrying(what, read, begin=False)

    def _write1(self, what: str, query: str, params: Sequence[Any]) -> None:
        """Run one write statement in its own write transaction."""
        text = self._dialect.sql(query)
        self._retrying(what, lambda cur: cur.execute(text, params), begin=not self._dialect.atomic_statements)

    def _transaction(self, what: str, body: Callable[[Cursor], T]) -> T:
        """Run `body` in a transaction that holds the write lock (SQLite) or row locks (PostgreSQL) and commit.

        The body runs again, from a fresh transaction, after a conflict with a concurrent one (a deadlock,
        a serialization failure, SQLite still busy after its timeout): it must only touch the database.
        """
        return self._retrying(what, body, begin=True)

    def _retrying(self, what: str, body: Callable[[Cursor], T], *, begin: bool) -> T:
        cur = self._cursor
        attempt = 0
        while True:
            attempt += 1
            try:
                if begin:
                    cur.execute(self._dialect.begin_write)
                result = body(cur)
                if begin:
                    cur.execute("COMMIT")
                return result
            except BaseException as exc:
                if begin:
                    # If the transaction is already gone, the original error is what matters.
                    with contextlib.suppress(self._dialect.error):
                        cur.execute("ROLLBACK")
                if not isinstance(exc, self._dialect.error):
                    raise
                if attempt == _ATTEMPTS or self._closed or not self._dialect.is_transient(exc):
                    raise self._failure(what, exc) from exc
            # Full jitter, so that engines that collided do not collide again in step.
            time.sleep(random.uniform(0, min(1.0, 0.01 * 2**attempt)))

    def _failure(self, what: str, exc: Exception) -> StoreError:
        hint = "check that the database is reachable and writable"
        if self._closed:
            hint = "the store was closed; open it again with open_metadata()"
        elif self._dialect.is_transient(exc):
            hint = "other processes kept the rows or the database locked for minutes; retry when they are done"
        return StoreError(f"cannot {what} in the metadata database {self._dialect.url}: {exc}; {hint}")
