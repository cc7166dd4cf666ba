"""The hash-chained audit log in the metadata database; a part of `MetadataStore`.

Each row's hash covers its own fields and the previous row's hash, so the rows form one chain::

    audit_head (seq N, hash hN)                       <- moved by every append, in its transaction
        |
    row 1: hash h1 = H(1, at, actor, action, subject, detail, "")
    row 2: hash h2 = H(2, at, ..., h1)
    ...
    row N: hash hN = H(N, at, ..., hN-1)

An append first updates the single ``audit_head`` row. That statement takes SQLite's write lock (already held
by the transaction) or the row lock on PostgreSQL, which every other appender then waits for until this
transaction commits or rolls back: appends serialize, each one sees the head its predecessor left, and the
chain never forks, however many processes share the database. Verification walks the rows in sequence order
and reports the first one where the chain does not hold.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from cairn.errors import StoreError
from cairn.hashing import hash_struct
from cairn.storage.database import Database
from cairn.storage.dialect import Cursor

if TYPE_CHECKING:  # created on first use: a run reads no audit rows (see cairn.core.governance)
    from cairn.core.governance import AuditBreak, AuditEntry

# Domain tag of a row's hash; a new encoding gets a new tag.
HASH_TAG = "cairn.audit/1"
_COLUMNS = "seq, at, actor, action, subject, detail, prev_hash, hash"
_PAGE = 5000  # rows read per statement while verifying


def canonical_detail(detail: Mapping[str, Any]) -> str:
    """The stored JSON of an entry's detail: sorted keys, no spaces, no NaN; the hash covers this text.

    Raises:
        StoreError: The detail holds values that are not JSON.
    """
    try:
        return json.dumps(dict(detail), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StoreError(
            f"cannot record the audit detail {detail!r}: {exc}; use JSON-compatible values (str, numbers, lists, dicts)"
        ) from exc


def entry_hash(seq: int, at: float, actor: str, action: str, subject: str, detail: str, prev_hash: str) -> str:
    """The hash of one audit row: BLAKE3 over the canonical encoding of its fields and its predecessor's hash."""
    return hash_struct([HASH_TAG, seq, at, actor, action, subject, detail, prev_hash])


def append_audit(
    cur: Cursor,
    sql: Callable[[str], str],
    actor: str,
    action: str,
    subject: str,
    detail: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Append one chained row inside the caller's write transaction, so that the action and its row commit together.

    Call it from the body of a `Database._transaction`, preferably as its last statement: from the first
    statement on, the transaction holds the head that every other appender waits for.

    Args:
        cur: The cursor of the open transaction.
        sql: The store's query translator (`Database._sql`).
        actor: Who acted: a user's name, or a component (``engine``, ``daemon``).
        action: What was done, as ``noun.verb`` (``user.add``, ``model.promote``).
        subject: What it was done to (a user's name, ``model@version``).
        detail: JSON-compatible facts of the action (old and new values, a reason).

    Returns:
        The appended row.
    """
    text = canonical_detail(detail or {})
    # Taking the head first is what serializes appenders (see the module docstring).
    cur.execute(sql("UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash, {now}"))
    row = cur.fetchone()
    if row is None:
        raise StoreError("the audit_head row is missing from the metadata database; the audit log cannot be appended")
    seq, prev_hash, at = int(row[0]), str(row[1]), float(row[2])
    digest = entry_hash(seq, at, actor, action, subject, text, prev_hash)
    cur.execute(
        sql(f"INSERT INTO audit ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
        (seq, at, actor, action, subject, text, prev_hash, digest),
    )
    cur.execute(sql("UPDATE audit_head SET hash = ? WHERE id = 1"), (digest,))
    from cairn.core.governance import AuditEntry

    return AuditEntry(seq, at, actor, action, subject, json.loads(text), prev_hash, digest)


def lock_audit(cur: Cursor, sql: Callable[[str], str]) -> None:
    """Take the head inside the caller's transaction without appending: for a transaction that must decide
    under the appenders' lock (whether any user exists, whether an admin would remain) before it appends."""
    cur.execute(sql("UPDATE audit_head SET seq = seq WHERE id = 1"))


class AuditRecords(Database):
    """The audit log: append in a transaction of one's own, list, and verify the chain."""

    def append_audit(
        self, actor: str, action: str, subject: str, detail: Mapping[str, Any] | None = None
    ) -> AuditEntry:
        """Append one row in its own transaction (for an action that has none); see `append_audit`."""
        canonical_detail(detail or {})  # before the transaction: a value that is not JSON fails here
        return self._transaction(
            f"append {action} to the audit log",
            lambda cur: append_audit(cur, self._sql, actor, action, subject, detail),
        )

    def audit_entries(
        self,
        limit: int = 50,
        *,
        actor: str | None = None,
        action: str | None = None,
        subject: str | None = None,
        before: int | None = None,
    ) -> list[AuditEntry]:
        """The newest audit rows first, at most `limit`, optionally only those matching every filter given.

        Args:
            limit: At most this many rows.
            actor: Only rows of this actor.
            action: Only this action (``user.add``), or a family of actions ending in ``.*`` (``model.*``).
            subject: Only rows about this subject.
            before: Only rows with a sequence number below this one (to page back).
        """
        where: list[str] = []
        params: list[Any] = []
        if actor is not None:
            where.append("actor = ?")
            params.append(actor)
        if action is not None and action.endswith(".*"):
            where.append("substr(action, 1, ?) = ?")
            params += [len(action) - 1, action[:-1]]
        elif action is not None:
            where.append("action = ?")
            params.append(action)
        if subject is not None:
            where.append("subject = ?")
            params.append(subject)
        if before is not None:
            where.append("seq < ?")
            params.append(before)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = self._rows(
            "read the audit log", f"SELECT {_COLUMNS} FROM audit{clause} ORDER BY seq DESC LIMIT ?", (*params, limit)
        )
        return [_entry(row) for row in rows]

    def audit_head(self) -> tuple[int, str]:
        """The sequence number and hash of the chain's last row as the head records them (0 and ``""`` when empty).

        Writing the hash down elsewhere anchors the log: a chain rewritten from some row on, hashes and head
        included, no longer ends at the hash that was written down.
        """
        rows = self._rows("read the audit head", "SELECT seq, hash FROM audit_head WHERE id = 1")
        if not rows:
            raise StoreError(
                "the audit_head row is missing from the metadata database; the audit log was tampered with"
            )
        return int(rows[0][0]), str(rows[0][1])

    def verify_audit(self) -> AuditBreak | None:
        """Walk the chain from its first row and return the first row where it does not hold, or None if intact.

        The walk holds the head (as an append does), so that appends wait for it and the rows and the head it
        compares are one consistent state. Each row must have the next sequence number (else rows are
        missing), carry its predecessor's hash (else rows were reordered or a hash replaced) and hash to its
        stored hash (else a field was edited); the last row must be the one the head records.
        """
        return self._transaction("verify the audit log", self._verify)

    def _verify(self, cur: Cursor) -> AuditBreak | None:
        from cairn.core.governance import AuditBreak

        cur.execute(self._sql("UPDATE audit_head SET seq = seq WHERE id = 1 RETURNING seq, hash"))
        head = cur.fetchone()
        if head is None:
            return AuditBreak(1, "head", "the audit_head row is missing: the log's head was deleted")
        head_seq, head_hash = int(head[0]), str(head[1])
        page = self._sql(f"SELECT {_COLUMNS} FROM audit WHERE seq > ? ORDER BY seq LIMIT {_PAGE}")
        last_seq, last_hash = 0, ""
        while True:
            cur.execute(page, (last_seq,))
            rows = cur.fetchall()
            for row in rows:
                problem = _check(row, last_seq, last_hash)
                if problem is not None:
                    return AuditBreak(*problem)
                last_seq, last_hash = int(row[0]), str(row[7])
            if len(rows) < _PAGE:
                break
        if last_seq < head_seq:
            missing = f"row {head_seq}" if last_seq + 1 == head_seq else f"rows {last_seq + 1} to {head_seq}"
            return AuditBreak(
                last_seq + 1,
                "missing",
                f"{missing} missing: the head records {head_seq} rows but the chain ends at row {last_seq} "
                "(rows were deleted from the end)",
            )
        if last_seq > head_seq:
            return AuditBreak(
                head_seq + 1,
                "head",
                f"row {head_seq + 1} is not recorded by the head, which ends the chain at row {head_seq} "
                "(rows were added outside cairn)",
            )
        if last_hash != head_hash:
            return AuditBreak(
                last_seq,
                "head",
                f"row {last_seq} is the last row but its hash {last_hash} is not the head's {head_hash} "
                "(the last row or the head was rewritten)",
            )
        return None


def _check(row: Any, last_seq: int, last_hash: str) -> tuple[int, str, str] | None:
    """Why one row does not continue the chain after (`last_seq`, `last_hash`), as the `AuditBreak` fields
    ``(seq, kind, message)``, or None when it does (run for every row: it builds no record)."""
    seq = int(row[0])
    if seq != last_seq + 1:
        missing = f"row {last_seq + 1} is" if seq == last_seq + 2 else f"rows {last_seq + 1} to {seq - 1} are"
        after = f"row {last_seq}" if last_seq else "the start"
        return (
            last_seq + 1,
            "missing",
            f"{missing} missing: the chain goes from {after} to row {seq} (rows were deleted)",
        )
    prev_hash = str(row[6])
    if prev_hash != last_hash:
        follows = f"row {last_seq}'s hash is {last_hash}" if last_seq else "the first row's must be empty"
        return (
            seq,
            "out_of_order",
            f"row {seq} does not follow row {last_seq}: its prev_hash is {prev_hash or '(empty)'}, but {follows} "
            "(rows were reordered or a hash was replaced)",
        )
    at, actor, action, subject, detail, stored = float(row[1]), *map(str, row[2:6]), str(row[7])
    if entry_hash(seq, at, actor, action, subject, detail, prev_hash) != stored:
        return (
            seq,
            "edited",
            f"row {seq} ({action} {subject} by {actor}) does not match its hash: a field was edited after it was "
            "written",
        )
    return None


def _entry(row: Any) -> AuditEntry:
    from cairn.core.governance import AuditEntry

    seq, at, actor, action, subject, detail, prev_hash, digest = row
    try:
        parsed = json.loads(detail)
    except ValueError:  # an edited row: `verify_audit` reports it, listing it must not fail
        parsed = None
    if not isinstance(parsed, dict):
        parsed = {"unparsed": str(detail)}
    return AuditEntry(int(seq), float(at), str(actor), str(action), str(subject), parsed, str(prev_hash), str(digest))
