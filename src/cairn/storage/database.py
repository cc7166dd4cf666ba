"""One connection to the metadata database: reads, and write transactions that run again after a conflict or
on a fresh connection after the old one was lost."""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

from cairn.errors import ConnectionLost, StoreError
from cairn.storage.dialect import Connection, Cursor, Dialect

T = TypeVar("T")

# Tries of a transaction that conflicted with a concurrent one (each SQLite try waits up to its busy timeout).
_ATTEMPTS = 10
# Seconds a statement keeps trying to reconnect after the connection was lost (a server restarting, a failover).
RECONNECT_S = 30.0


class Database:
    """A DB-API connection in autocommit mode, used from one thread; the base of the metadata store's records.

    Every write is one short transaction. On SQLite it takes the database's write lock first, so concurrent
    engines serialize instead of deadlocking; on PostgreSQL it takes row locks, and a deadlock or a
    serialization failure between engines makes the transaction run again rather than fail. Either way a
    conflict that outlasts the waiting is tried again with backoff, so it slows a run down instead of
    reaching the user.

    A lost connection (PostgreSQL: the server restarted, the session was terminated, the network dropped) is
    replaced by a new one, checked for life before every statement without a round trip. What was cut off
    runs again on the new connection when that is safe::

        lost in BEGIN or in the body  ─▶ the server rolled the transaction back: run it again (reads too)
        lost in COMMIT (or in a write  ─▶ it may have committed: run it again only if it is `repeatable`,
        outside a transaction)            else raise `ConnectionLost` and repeat nothing
    """

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self._connection: Connection = dialect.connect()
        self._cursor: Cursor = self._connection.cursor()
        self._closed = False
        self._lost = False  # the connection is known to be gone: reconnect before the next statement

    def close(self) -> None:
        """Close the connection; further calls fail. Closing twice is harmless."""
        if not self._closed:
            self._closed = True
            with contextlib.suppress(self._dialect.error):
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

        return self._retrying(what, read, begin=False, repeatable=True)

    def _write1(self, what: str, query: str, params: Sequence[Any], *, repeatable: bool = False) -> None:
        """Run one write statement in its own write transaction.

        `repeatable`: running the statement twice has the effect of running it once, so that it is run again
        when the connection was lost while it may have committed.
        """
        text = self._dialect.sql(query)
        begin = not self._dialect.atomic_statements
        self._retrying(what, lambda cur: cur.execute(text, params), begin=begin, repeatable=repeatable)

    def _transaction(self, what: str, body: Callable[[Cursor], T], *, repeatable: bool = False) -> T:
        """Run `body` in a transaction that holds the write lock (SQLite) or row locks (PostgreSQL) and commit.

        The body runs again, from a fresh transaction, after a conflict with a concurrent one (a deadlock,
        a serialization failure, SQLite still busy after its timeout) or a connection lost before COMMIT: it
        must only touch the database. `repeatable` says that committing it twice does no harm, so that it
        also runs again when the connection was lost during COMMIT; otherwise that raises `ConnectionLost`.
        """
        return self._retrying(what, body, begin=True, repeatable=repeatable)

    def _retrying(self, what: str, body: Callable[[Cursor], T], *, begin: bool, repeatable: bool) -> T:
        conflicts = 0
        losses = 0
        lost_at = 0.0  # monotonic time the connection was first found lost
        while True:
            if losses:
                # The first new connection is made at once; then with growing pauses while the server is away.
                time.sleep(random.uniform(0.0, min(0.5, 0.02 * 2**losses)) if losses > 1 else 0.0)
            try:
                cur = self._live_cursor()
            except StoreError as exc:  # no new connection yet (the server is restarting, the network is down)
                losses += 1
                lost_at = lost_at or time.monotonic()
                if time.monotonic() - lost_at > RECONNECT_S:
                    raise self._unreachable(what, exc, "no new one could be made") from exc
                continue
            in_doubt = False  # whether what was sent may have committed
            try:
                if begin:
                    cur.execute(self._dialect.begin_write)
                else:
                    in_doubt = True  # one statement outside a transaction commits itself (reads are repeatable)
                result = body(cur)
                if begin:
                    in_doubt = True
                    cur.execute("COMMIT")
                return result
            except BaseException as exc:
                if begin:
                    # If the transaction is already gone, the original error is what matters.
                    with contextlib.suppress(self._dialect.error):
                        cur.execute("ROLLBACK")
                if not isinstance(exc, self._dialect.error):
                    raise
                if self._closed:
                    raise self._failure(what, exc) from exc
                if self._dialect.lost(exc, self._connection):
                    self._lost = True
                    if in_doubt and not repeatable:
                        raise self._in_doubt(what, exc) from exc
                    losses += 1
                    lost_at = lost_at or time.monotonic()
                    if time.monotonic() - lost_at > RECONNECT_S:
                        raise self._unreachable(what, exc, "each new one was lost too") from exc
                    continue
                conflicts += 1
                if conflicts == _ATTEMPTS or not self._dialect.is_transient(exc):
                    raise self._failure(what, exc) from exc
            # Full jitter, so that engines that collided do not collide again in step.
            time.sleep(random.uniform(0, min(1.0, 0.01 * 2**conflicts)))

    def _live_cursor(self) -> Cursor:
        """The cursor of a live connection: a lost one (known, or found dead now) is replaced first.

        Raises:
            StoreError: No new connection could be made.
        """
        if self._closed:
            return self._cursor  # its statements fail, saying that the store was closed
        if self._lost or not self._dialect.alive(self._connection):
            self._lost = True
            with contextlib.suppress(self._dialect.error):
                self._connection.close()
            self._connection = self._dialect.connect()
            self._cursor = self._connection.cursor()
            self._lost = False
        return self._cursor

    def _in_doubt(self, what: str, exc: Exception) -> ConnectionLost:
        return ConnectionLost(
            f"lost the connection to the metadata database {self._dialect.url} while trying to {what} "
            f"({_first_line(exc)}): whether it was recorded is unknown, so it is not repeated; run the command "
            "again: a rerun of `cairn run` resumes from what was committed"
        )

    def _unreachable(self, what: str, exc: Exception, how: str) -> ConnectionLost:
        return ConnectionLost(
            f"cannot {what}: the connection to the metadata database {self._dialect.url} was lost and {how} "
            f"for {RECONNECT_S:.0f} s ({_first_line(exc)}); when the database is reachable again, run the "
            "command again: a rerun of `cairn run` resumes from what was committed"
        )

    def _failure(self, what: str, exc: Exception) -> StoreError:
        hint = "check that the database is reachable and writable"
        if self._closed:
            hint = "the store was closed; open it again with open_metadata()"
        elif self._dialect.is_transient(exc):
            hint = "other processes kept the rows or the database locked for minutes; retry when they are done"
        else:
            hint = self._dialect.trouble(exc) or hint
        return StoreError(f"cannot {what} in the metadata database {self._dialect.url}: {_first_line(exc)}; {hint}")


def _first_line(exc: Exception) -> str:
    """An error's message on one line (a driver's can span several)."""
    return " ".join(str(exc).split())
