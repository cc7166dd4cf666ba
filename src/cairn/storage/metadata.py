"""The metadata store: runs, steps, attempts, leases, materializations and logs in one SQL database."""

from __future__ import annotations

import dataclasses
import json
import operator
import os
from collections.abc import Sequence
from typing import Any

from cairn.core.keys import step_label
from cairn.core.records import (
    ABANDONED,
    PENDING,
    RUNNING,
    SUCCEEDED,
    AttemptRecord,
    InputRef,
    LogRecord,
    Materialization,
    MaterializationRef,
    RunRecord,
    StepRecord,
)
from cairn.errors import LeaseLost, StoreError, UsageError
from cairn.hashing import digest_bytes
from cairn.storage.attempts import RELEASED, AttemptLeases, Claim
from cairn.storage.audit import AuditRecords
from cairn.storage.automation import AutomationRecords
from cairn.storage.datasets import DatasetRecords
from cairn.storage.dialect import Cursor, dialect_for_url
from cairn.storage.identity import IdentityRecords
from cairn.storage.observability import ObservabilityRecords
from cairn.storage.pools import PoolSlots
from cairn.storage.registry import RegistryRecords, register_in
from cairn.storage.schema import schema_is_current, upgrade_schema

_CHUNK = 500  # values per IN list

_RUN_COLUMNS = (
    "r.run_id, r.status, r.selection, r.created_at, r.finished_at, r.heartbeat_at, r.args, "
    "e.environment, r.profile FROM runs r LEFT JOIN environments e ON e.env_hash = r.env_hash"
)
# Columns are named as the fields of the records they hold.
_RUN_FIELDS = [f.name for f in dataclasses.fields(RunRecord)]
_STEP_FIELDS = [f.name for f in dataclasses.fields(StepRecord)]
_STEP_COLUMNS = ", ".join(_STEP_FIELDS)
_step_params = operator.attrgetter(*_STEP_FIELDS)
_MAT_FIELDS = ["id", *(f.name for f in dataclasses.fields(Materialization) if f.name not in ("id", "inputs"))]
_MAT_COLUMNS = ", ".join(_MAT_FIELDS)
_REF_COLUMNS = ", ".join(MaterializationRef._fields)
_LATEST = "(SELECT MAX(id) FROM materializations GROUP BY asset, partition)"  # the newest id of each asset partition
_MAT_JSON = frozenset({"code_parts", "params", "metadata", "metrics"})
_MAT_WRITTEN = [name for name in _MAT_FIELDS if name not in ("id", "created_at")]

# Upserts replace every column after the primary key (3 columns).
_UPSERT_STEP = (
    f"INSERT INTO steps ({_STEP_COLUMNS}) VALUES ({', '.join('?' * len(_STEP_FIELDS))}) "
    "ON CONFLICT (run_id, asset, partition) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in _STEP_FIELDS[3:])
)
_RELEASE_LEASE = "UPDATE leases SET expires_at = ? WHERE cache_key = ? AND token = ? AND expires_at > ?"
_INSERT_MAT = (
    f"INSERT INTO materializations ({', '.join(_MAT_WRITTEN)}, created_at) "
    f"VALUES ({', '.join('?' * len(_MAT_WRITTEN))}, {{now}}) RETURNING id"
)


@dataclasses.dataclass(frozen=True, slots=True)
class ObjectRef:
    """One object that a materialization refers to: its digest, recorded size and format, and whose it is."""

    digest: str
    size: int
    format: str
    asset: str
    partition: str


def open_metadata(url: str, project_dir: str | os.PathLike[str]) -> MetadataStore:
    """Open the metadata database at `url`, applying pending schema migrations.

    Args:
        url: A database URL in SQLAlchemy's spelling: ``sqlite:///relative/path.db`` (relative to
            `project_dir`), ``sqlite:////absolute/path.db``, ``sqlite:///:memory:`` or
            ``postgresql+psycopg://user:password@host:port/database`` (needs the ``postgres`` extra).
        project_dir: The project folder.

    Raises:
        ConfigError: The URL is malformed or names an unsupported database.
        StoreError: The database cannot be opened or reached (psycopg missing, server down, wrong password),
            or its schema is newer than this cairn supports.
    """
    store = MetadataStore(dialect_for_url(url, project_dir))
    try:
        store._migrate()
    except BaseException:
        store.close()
        raise
    return store


class MetadataStore(
    AttemptLeases,
    DatasetRecords,
    PoolSlots,
    RegistryRecords,
    IdentityRecords,
    AuditRecords,
    ObservabilityRecords,
    AutomationRecords,
):
    """Records of runs and their results in one SQL database (SQLite or PostgreSQL); used from one thread.

    Each write is one short transaction (see `Database`). Times that order events between engines
    (heartbeats, leases, pool slots, materializations) come from the database's clock.
    """

    # -- runs --------------------------------------------------------------------------------------

    def create_run(self, run: RunRecord) -> None:
        """Record a new run; its heartbeat starts at the database's now.

        Args:
            run: The run. Its environment is stored once per distinct content.
        """
        env_hash = None
        env_json = None
        if run.environment:
            env_json = _dumps(run.environment, "the run environment")
            # older runs join their environment by a sha256: key; that environment is stored once more by this one
            env_hash = digest_bytes(env_json.encode())
        row = (
            run.run_id,
            run.status,
            run.selection,
            run.created_at or None,
            run.finished_at,
            _dumps(run.args, "the run arguments"),
            env_hash,
            run.profile,
        )

        def record(cur: Cursor) -> None:
            if env_hash is not None:
                cur.execute(
                    self._sql(
                        "INSERT INTO environments (env_hash, environment) VALUES (?, ?) "
                        "ON CONFLICT (env_hash) DO NOTHING"
                    ),
                    (env_hash, env_json),
                )
            cur.execute(
                self._sql(
                    "INSERT INTO runs (run_id, status, selection, created_at, finished_at, heartbeat_at, "
                    "args, env_hash, profile) VALUES (?, ?, ?, COALESCE(?, {now}), ?, {now}, ?, ?, ?)"
                ),
                row,
            )

        self._transaction(f"record run {run.run_id}", record)

    def heartbeat_run(self, run_id: str) -> None:
        """Record that the engine of a run is alive, at the database's now."""
        self._write1(
            f"heartbeat run {run_id}",
            "UPDATE runs SET heartbeat_at = {now} WHERE run_id = ?",
            (run_id,),
            repeatable=True,
        )

    def finish_run(self, run_id: str, status: str) -> None:
        """Set a running run's final status and finish time (database clock); an abandoned run stays abandoned.

        What the run still holds is given up: its pool slots, and the leases of attempts that never ended
        (an engine that stopped on an error, such as a lost database connection), which are marked abandoned,
        so that the next run takes their steps over at once.
        """

        def finish(cur: Cursor) -> None:
            cur.execute(
                self._sql("UPDATE runs SET status = ?, finished_at = {now} WHERE run_id = ? AND status = ?"),
                (status, run_id, RUNNING),
            )
            self._end_unfinished(cur, run_id, "the run ended before this attempt did")

        self._transaction(f"finish run {run_id}", finish, repeatable=True)

    def abandon_stale_runs(self, stale_after_s: float) -> list[str]:
        """Mark running runs whose engine stopped heartbeating as abandoned.

        Their running or pending steps and running attempts become ``abandoned`` and their leases are
        released, so that another engine can take the work over at once (fencing keeps a late commit
        of the old engine out).

        Args:
            stale_after_s: A run is stale when its last heartbeat is older than this many seconds.

        Returns:
            The ids of the runs marked abandoned.
        """

        def abandon(cur: Cursor) -> list[str]:
            # One statement finds and marks them, so a heartbeat that lands meanwhile keeps its run alive.
            cur.execute(
                self._sql(
                    "UPDATE runs SET status = ?, finished_at = {now} "
                    "WHERE status = ? AND COALESCE(heartbeat_at, created_at) < {now} - ? RETURNING run_id"
                ),
                (ABANDONED, RUNNING, stale_after_s),
            )
            run_ids = sorted(str(row[0]) for row in cur.fetchall())
            for run_id in run_ids:
                self._abandon_work(cur, run_id, "the run's engine stopped heartbeating")
            return run_ids

        return self._transaction("abandon stale runs", abandon, repeatable=True)

    def abandon_run(self, run_id: str, why: str) -> bool:
        """Mark one running run abandoned (its engine is known to be dead); False if it was not running."""

        def abandon(cur: Cursor) -> bool:
            cur.execute(
                self._sql("UPDATE runs SET status = ?, finished_at = {now} WHERE run_id = ? AND status = ?"),
                (ABANDONED, run_id, RUNNING),
            )
            if cur.rowcount != 1:
                return False
            self._abandon_work(cur, run_id, why)
            return True

        return self._transaction(f"abandon run {run_id}", abandon, repeatable=True)

    def _abandon_work(self, cur: Cursor, run_id: str, why: str) -> None:
        """Mark an abandoned run's unfinished steps and attempts, and free its leases and pool slots."""
        cur.execute(
            self._sql("UPDATE steps SET status = ? WHERE run_id = ? AND status IN (?, ?)"),
            (ABANDONED, run_id, RUNNING, PENDING),
        )
        self._end_unfinished(cur, run_id, why)

    def _end_unfinished(self, cur: Cursor, run_id: str, why: str) -> None:
        """Mark a run's running attempts abandoned, and free its leases and pool slots."""
        cur.execute(
            self._sql(
                "UPDATE attempts SET status = ?, finished_at = {now}, error = COALESCE(error, ?) "
                "WHERE run_id = ? AND status = ?"
            ),
            (ABANDONED, why, run_id, RUNNING),
        )
        cur.execute(
            self._sql("UPDATE leases SET expires_at = ? WHERE run_id = ? AND expires_at > ?"),
            (RELEASED, run_id, RELEASED),
        )
        self._release_run_slots(cur, run_id)

    def get_run(self, run_id: str) -> RunRecord | None:
        """The run with exactly this id, or None."""
        rows = self._rows(f"read run {run_id}", f"SELECT {_RUN_COLUMNS} WHERE r.run_id = ?", (run_id,))
        return _run(rows[0]) if rows else None

    def resolve_run_id(self, text: str) -> str:
        """Turn what a user typed into a run id: a full id, a unique prefix, ``latest``/``last``, or
        ``latest~N`` (the run started N runs before the latest, as git's ``HEAD~N``).

        Raises:
            UsageError: No run matches, or the prefix matches several runs.
        """
        text = text.strip()
        if not text:
            raise UsageError("a run id is required; `cairn runs` lists the recorded runs")
        word, tilde, back = text.lower().partition("~")
        if word in ("latest", "last"):
            # ASCII digits only ("²" is a digit to isdigit, not to int), few enough for an SQL integer.
            if tilde and not (back.isascii() and back.isdigit() and len(back) <= 18):
                raise UsageError(f"{text!r}: after '~' comes a number of runs back, e.g. latest~1")
            offset = int(back) if back else 0
            rows = self._rows(
                "find the latest runs", "SELECT run_id FROM runs ORDER BY id DESC LIMIT 1 OFFSET ?", (offset,)
            )
            if not rows and offset == 0:
                raise UsageError("no runs are recorded yet; start one with `cairn run`")
            if not rows:
                raise UsageError(f"{text!r}: there are not {offset + 1} recorded runs; `cairn runs` lists them")
            return str(rows[0][0])
        if self._rows(f"find run {text}", "SELECT run_id FROM runs WHERE run_id = ?", (text,)):
            return text
        rows = self._rows(
            f"find run {text}",
            "SELECT run_id FROM runs WHERE substr(run_id, 1, ?) = ? ORDER BY id DESC LIMIT 6",
            (len(text), text),
        )
        if not rows:
            raise UsageError(f"no run id starts with {text!r}; `cairn runs` lists the recorded runs")
        if len(rows) > 1:
            shown = ", ".join(str(row[0]) for row in rows[:5]) + (", ..." if len(rows) > 5 else "")
            raise UsageError(f"run id prefix {text!r} is ambiguous: it matches {shown}; type more characters of the id")
        return str(rows[0][0])

    def list_runs(self, limit: int = 50) -> list[RunRecord]:
        """The most recently created runs, newest first."""
        rows = self._rows("list runs", f"SELECT {_RUN_COLUMNS} ORDER BY r.id DESC LIMIT ?", (limit,))
        return [_run(row) for row in rows]

    # -- steps ---------------------------------------------------------------------------------------

    def upsert_steps(self, steps: Sequence[StepRecord]) -> None:
        """Insert or replace steps by (run_id, asset, partition), all in one transaction."""
        if not steps:
            return
        rows = [_step_params(step) for step in steps]
        self._transaction(
            f"record {len(steps)} steps", lambda cur: cur.executemany(self._sql(_UPSERT_STEP), rows), repeatable=True
        )

    def run_steps(self, run_id: str) -> list[StepRecord]:
        """The steps of a run, ordered by asset and partition."""
        rows = self._rows(
            f"read the steps of run {run_id}",
            f"SELECT {_STEP_COLUMNS} FROM steps WHERE run_id = ? ORDER BY asset, partition",
            (run_id,),
        )
        return [StepRecord(*row) for row in rows]

    # -- materializations --------------------------------------------------------------------------

    def claim(self, cache_key: str, run_id: str, owner: str, ttl_s: float, attempt: AttemptRecord) -> Claim:
        """Claim a cache key for an attempt: take its lease and record the attempt, in one transaction.

        Args:
            cache_key: What the attempt computes.
            run_id: The run of the attempt.
            owner: The engine (``host:process``).
            ttl_s: Seconds until the lease expires unless renewed.
            attempt: Recorded, with the new token as its `lease_token`, when the lease is granted.

        Returns:
            Granted with the token (and, when the key was leased before, the newest result committed with
            it since), or held by another run, with that run's id and owner.
        """

        token, holder, committed = self._claim(cache_key, run_id, owner, ttl_s, attempt)
        mats = self.materializations_by_id([committed]) if committed is not None else []
        return Claim(token, holder, mats[0] if mats else None)

    def commit_materialization(
        self, mat: Materialization, step: StepRecord, lease: tuple[str, int] | None, model_author: str | None = None
    ) -> int:
        """Record a result: the moment it exists.

        In one transaction: check that the lease is still held, insert the materialization (created
        now, on the database's clock) with its inputs, register it as a model version when it is one,
        upsert the step, mark the attempt succeeded and release the lease.

        Args:
            mat: The materialization; its `id` and `created_at` are ignored.
            step: The step's record after this result.
            lease: The ``(cache_key, token)`` the attempt holds, or None when it holds no lease.
            model_author: For a ``kind="model"`` asset, who ran it: the author of the model version.

        Returns:
            The id of the new materialization.

        Raises:
            LeaseLost: Another run took the lease over; nothing was written.
        """
        (mat_id,) = self.commit_materializations([(mat, step, lease, model_author)])
        if mat_id is None:
            assert lease is not None
            raise LeaseLost(
                f"the lease on cache key {lease[0]} (token {lease[1]}) is no longer held by run "
                f"{mat.run_id}, so attempt {mat.attempt} of {step_label(mat.asset, mat.partition)} was not "
                "committed; another run computes this result, and a rerun reuses it"
            )
        return mat_id

    def commit_materializations(
        self, commits: Sequence[tuple[Materialization, StepRecord, tuple[str, int] | None, str | None]]
    ) -> list[int | None]:
        """Record several results in one transaction, each as `commit_materialization` records one.

        Each item is ``(mat, step, lease, model_author)``. A result whose lease another run took over is left
        out (nothing of it is written) without keeping the others from being committed.

        Returns:
            For each item in order, the id of its new materialization, or None when its lease was lost.
        """
        params = [_mat_params(mat) for mat, _, _, _ in commits]  # before the transaction: non-JSON fails here

        def commit(cur: Cursor) -> list[int | None]:
            ids: list[int | None] = []
            for (mat, step, lease, model_author), values in zip(commits, params, strict=True):
                if lease is not None:
                    cur.execute(self._sql(_RELEASE_LEASE), (RELEASED, lease[0], lease[1], RELEASED))
                    if cur.rowcount != 1:
                        ids.append(None)
                        continue
                cur.execute(self._sql(_INSERT_MAT), values)
                mat_id = int(cur.fetchone()[0])
                if mat.inputs:
                    cur.executemany(
                        self._sql(
                            "INSERT INTO materialization_inputs "
                            "(mat_id, position, asset, partition, data_version) VALUES (?, ?, ?, ?, ?)"
                        ),
                        [(mat_id, i, ref.asset, ref.partition, ref.data_version) for i, ref in enumerate(mat.inputs)],
                    )
                if model_author is not None:
                    register_in(cur, self._sql, mat.asset, mat_id, mat.data_version, mat.run_id, model_author)
                cur.execute(self._sql(_UPSERT_STEP), _step_params(step))
                cur.execute(
                    self._sql(
                        "UPDATE attempts SET status = ?, finished_at = {now}, error = NULL "
                        "WHERE run_id = ? AND asset = ? AND partition = ? AND attempt = ?"
                    ),
                    (SUCCEEDED, mat.run_id, mat.asset, mat.partition, mat.attempt),
                )
                ids.append(mat_id)
            return ids

        what = (
            f"commit the materialization of {step_label(commits[0][0].asset, commits[0][0].partition)}"
            if len(commits) == 1
            else f"commit {len(commits)} materializations"
        )
        return self._transaction(what, commit) if commits else []

    def find_by_cache_key(self, cache_key: str) -> Materialization | None:
        """The newest materialization with this cache key, or None."""
        rows = self._rows(
            f"find cache key {cache_key}",
            f"SELECT {_MAT_COLUMNS} FROM materializations WHERE cache_key = ? ORDER BY id DESC LIMIT 1",
            (cache_key,),
        )
        mats = self._with_inputs(rows)
        return mats[0] if mats else None

    def find_by_cache_keys(self, keys: Sequence[str]) -> dict[str, Materialization]:
        """The newest materialization of each cache key that has one."""
        rows: list[Any] = []
        for chunk in _chunks(list(dict.fromkeys(keys))):
            rows += self._rows(
                f"find {len(chunk)} cache keys",
                f"SELECT {_MAT_COLUMNS} FROM materializations WHERE id IN (SELECT MAX(id) FROM "
                f"materializations WHERE cache_key IN ({_marks(len(chunk))}) GROUP BY cache_key)",
                chunk,
            )
        return {mat.cache_key: mat for mat in self._with_inputs(rows)}

    def materializations_by_id(self, ids: Sequence[int]) -> list[Materialization]:
        """The materializations with these ids (in id order), with their inputs."""
        rows: list[Any] = []
        for chunk in _chunks(list(ids)):
            rows += self._rows(
                "read materializations by id",
                f"SELECT {_MAT_COLUMNS} FROM materializations WHERE id IN ({_marks(len(chunk))}) ORDER BY id",
                chunk,
            )
        return self._with_inputs(rows)

    def latest_materialization(self, asset: str, partition: str = "") -> Materialization | None:
        """The newest materialization of one asset partition, or None."""
        rows = self._rows(
            f"find the latest materialization of {step_label(asset, partition)}",
            f"SELECT {_MAT_COLUMNS} FROM materializations WHERE asset = ? AND partition = ? ORDER BY id DESC LIMIT 1",
            (asset, partition),
        )
        mats = self._with_inputs(rows)
        return mats[0] if mats else None

    def latest_refs(self) -> dict[tuple[str, str], MaterializationRef]:
        """What planning needs of the newest materialization of every asset partition, keyed by
        ``(asset, partition)``: one query, without the lineage, params and metadata of `latest_materializations`."""
        rows = self._rows(
            "read the latest materializations", f"SELECT {_REF_COLUMNS} FROM materializations WHERE id IN {_LATEST}"
        )
        return {(row[1], row[2]): MaterializationRef(*row) for row in rows}

    def latest_materializations(self) -> dict[tuple[str, str], Materialization]:
        """The newest materialization of every asset partition, keyed by ``(asset, partition)``."""
        rows = self._rows(
            "read the latest materializations", f"SELECT {_MAT_COLUMNS} FROM materializations WHERE id IN {_LATEST}"
        )
        # Their inputs in one query (not one per 500 ids): every asset partition's, for a graph of 20,000 assets.
        inputs: dict[int, list[InputRef]] = {}
        for mat_id, asset, partition, data_version in self._rows(
            "read the latest materializations' inputs",
            "SELECT mat_id, asset, partition, data_version FROM materialization_inputs "
            f"WHERE mat_id IN {_LATEST} ORDER BY mat_id, position",
        ):
            inputs.setdefault(mat_id, []).append(InputRef(asset, partition, data_version))
        decoded: dict[str, Any] = {}
        out = {}
        for row in rows:
            mat = _materialization(row, tuple(inputs.get(row[0], ())), decoded)
            out[(mat.asset, mat.partition)] = mat
        return out

    def materializations(self, asset: str, partition: str | None = None, limit: int = 100) -> list[Materialization]:
        """The materializations of an asset (of one partition, if given), newest first."""
        where, params = "asset = ?", [asset]
        if partition is not None:
            where, params = where + " AND partition = ?", [asset, partition]
        rows = self._rows(
            f"list the materializations of {asset}",
            f"SELECT {_MAT_COLUMNS} FROM materializations WHERE {where} ORDER BY id DESC LIMIT ?",
            (*params, limit),
        )
        return self._with_inputs(rows)

    def mean_durations(self) -> dict[str, float]:
        """Per asset, the mean duration in seconds of its last five materializations."""
        rows = self._rows(
            "read step durations",
            # One index seek per asset, instead of numbering every row with a window function.
            "SELECT a.asset, (SELECT AVG(r.duration_s) FROM (SELECT m.duration_s FROM materializations m "
            "WHERE m.asset = a.asset ORDER BY m.id DESC LIMIT 5) r) "
            "FROM (SELECT DISTINCT asset FROM materializations) a",
        )
        return {str(asset): float(mean) for asset, mean in rows}

    def failed_cache_keys(self, limit: int = 10000) -> set[str]:
        """Cache keys of recently failed steps that have no materialization since."""
        rows = self._rows(
            "read failed steps",
            "SELECT s.cache_key FROM steps s WHERE s.status = ? AND s.cache_key IS NOT NULL "
            "AND NOT EXISTS (SELECT 1 FROM materializations m WHERE m.cache_key = s.cache_key) LIMIT ?",
            ("failed", limit),
        )
        return {str(row[0]) for row in rows}

    def referenced_digests(self) -> set[str]:
        """Every data version that a materialization refers to (objects `gc` must keep)."""
        rows = self._rows("read referenced digests", "SELECT DISTINCT data_version FROM materializations")
        return {str(row[0]) for row in rows}

    def referenced_objects(self) -> list[ObjectRef]:
        """Every object a materialization refers to, once per (object, size, format, asset, partition)."""
        rows = self._rows(
            "read referenced objects",
            "SELECT DISTINCT data_version, size, format, asset, partition FROM materializations "
            "ORDER BY data_version, asset, partition",
        )
        return [ObjectRef(str(d), int(size), str(fmt), str(a), str(p)) for d, size, fmt, a, p in rows]

    def materializations_with_version(
        self, asset: str, partition: str, data_version: str, limit: int = 20
    ) -> list[Materialization]:
        """The materializations of one asset partition that stored exactly this data version, newest first."""
        rows = self._rows(
            f"find {step_label(asset, partition)} at {data_version}",
            f"SELECT {_MAT_COLUMNS} FROM materializations WHERE data_version = ? AND asset = ? AND partition = ? "
            "ORDER BY id DESC LIMIT ?",
            (data_version, asset, partition, limit),
        )
        return self._with_inputs(rows)

    def run_materializations(self, run_id: str) -> dict[tuple[str, str], Materialization]:
        """The materialization each successful step of a run produced or reused, by ``(asset, partition)``.

        A step records its cache key and data version; of the materializations with both, the one the run
        committed is chosen, else the newest one created before the run started (what a cache hit read),
        else the newest (a concurrent run's result).
        """
        run = self.get_run(run_id)
        steps = [s for s in self.run_steps(run_id) if s.cache_key is not None and s.data_version is not None]
        if run is None or not steps:
            return {}
        rows: list[Any] = []
        for chunk in _chunks(list(dict.fromkeys(str(s.cache_key) for s in steps))):
            rows += self._rows(
                f"read the materializations of run {run_id}",
                f"SELECT {_MAT_COLUMNS} FROM materializations WHERE cache_key IN ({_marks(len(chunk))})",
                chunk,
            )
        candidates: dict[tuple[str, str], list[Any]] = {}
        for row in rows:
            values = dict(zip(_MAT_FIELDS, row, strict=True))
            candidates.setdefault((values["cache_key"], values["data_version"]), []).append(row)
        chosen = []
        for step in steps:
            found = candidates.get((str(step.cache_key), str(step.data_version)))
            if found:
                chosen.append(min(found, key=lambda row: _run_preference(row, run_id, run.created_at)))
        return {(mat.asset, mat.partition): mat for mat in self._with_inputs(chosen)}

    def runs_with_status(self, status: str, limit: int | None = None) -> list[RunRecord]:
        """Every run with this status (at most `limit`), newest first (e.g. the ``running`` ones, for `gc`)."""
        sql = f"SELECT {_RUN_COLUMNS} WHERE r.status = ? ORDER BY r.id DESC"
        params: tuple[object, ...] = (status,)
        if limit is not None:
            sql, params = sql + " LIMIT ?", (status, limit)
        return [_run(row) for row in self._rows(f"list {status} runs", sql, params)]

    # -- logs --------------------------------------------------------------------------------------

    def add_logs(self, records: Sequence[LogRecord]) -> None:
        """Append captured log lines, in one transaction.

        Written again when the connection was lost during its COMMIT: a line may then appear twice, but none
        is lost and the run goes on.
        """
        if not records:
            return
        query = self._sql(
            "INSERT INTO logs (run_id, asset, partition, attempt, created_at, level, message) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)"
        )
        rows = [(r.run_id, r.asset, r.partition, r.attempt, r.created_at, r.level, r.message) for r in records]
        self._transaction(f"record {len(records)} log lines", lambda cur: cur.executemany(query, rows), repeatable=True)

    def logs(self, run_id: str, asset: str | None = None, partition: str | None = None) -> list[LogRecord]:
        """The log lines of a run (of one asset, and one partition, if given) in the order written."""
        where, params = "run_id = ?", [run_id]
        if asset is not None:
            where, params = where + " AND asset = ?", [*params, asset]
        if partition is not None:
            where, params = where + " AND partition = ?", [*params, partition]
        rows = self._rows(
            f"read the logs of run {run_id}",
            f"SELECT run_id, asset, partition, attempt, created_at, level, message FROM logs WHERE {where} ORDER BY id",
            params,
        )
        return [LogRecord(*row) for row in rows]

    # -- internals ---------------------------------------------------------------------------------

    def _with_inputs(self, rows: list[Any]) -> list[Materialization]:
        """Build materializations from rows, loading all their inputs in one query per 500 rows."""
        inputs: dict[int, list[InputRef]] = {}
        for chunk in _chunks([row[0] for row in rows]):
            for mat_id, asset, partition, data_version in self._rows(
                "read materialization inputs",
                "SELECT mat_id, asset, partition, data_version FROM materialization_inputs "
                f"WHERE mat_id IN ({_marks(len(chunk))}) ORDER BY mat_id, position",
                chunk,
            ):
                inputs.setdefault(mat_id, []).append(InputRef(asset, partition, data_version))
        return [_materialization(row, tuple(inputs.get(row[0], ()))) for row in rows]

    def _migrate(self) -> None:
        """Bring the schema to the newest version; an up-to-date database takes no write lock."""
        if not schema_is_current(self._cursor, self._dialect):
            # Repeatable: an upgrade that did commit is found applied and not run again.
            self._transaction("upgrade the schema", lambda cur: upgrade_schema(cur, self._dialect), repeatable=True)


def _dumps(value: dict[str, Any], what: str) -> str:
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise StoreError(
            f"cannot record {what}: {exc}; use JSON-compatible values (str, numbers, lists, dicts)"
        ) from exc


def _marks(count: int) -> str:
    return ", ".join("?" * count)


def _chunks(values: list[Any]) -> list[list[Any]]:
    return [values[start : start + _CHUNK] for start in range(0, len(values), _CHUNK)]


def _mat_params(mat: Materialization) -> list[Any]:
    step = step_label(mat.asset, mat.partition)
    return [
        _dumps(getattr(mat, name), f"the {name} of {step}") if name in _MAT_JSON else getattr(mat, name)
        for name in _MAT_WRITTEN
    ]


_MAT_ID, _MAT_RUN_ID, _MAT_CREATED_AT = (_MAT_FIELDS.index(name) for name in ("id", "run_id", "created_at"))


def _run_preference(row: Sequence[Any], run_id: str, run_created_at: float) -> tuple[int, int]:
    """Sort key: the run's own commit first, then what existed when it started (newest first), then the rest."""
    if row[_MAT_RUN_ID] == run_id:
        rank = 0
    elif row[_MAT_CREATED_AT] <= run_created_at:
        rank = 1
    else:
        rank = 2
    return rank, -int(row[_MAT_ID])


def _run(row: Sequence[Any]) -> RunRecord:
    values = dict(zip(_RUN_FIELDS, row, strict=True))
    values["args"] = json.loads(values["args"])
    values["environment"] = json.loads(values["environment"] or "{}")
    return RunRecord(**values)


def _materialization(
    row: Sequence[Any], inputs: tuple[InputRef, ...], decoded: dict[str, Any] | None = None
) -> Materialization:
    """A materialization from its row (columns `_MAT_COLUMNS`).

    `decoded` memoizes the JSON columns' decoded text across rows (thousands of assets built by one function
    share their code parts, many their params): each record gets its own copy of the flat dict.
    """
    (mat_id, asset, partition, key, version, size, fmt, pytype, run_id, attempt, code_version, code_parts) = row[:12]
    params, seed, duration_s, created_at, metadata, metrics = row[12:]
    return Materialization(  # positionally, in field order: a plan reads 20,000 of them
        asset,
        partition,
        key,
        version,
        size,
        fmt,
        pytype,
        run_id,
        attempt,
        code_version,
        _loads_memo(code_parts, decoded),
        _loads_memo(params, decoded),
        seed,
        inputs,
        duration_s,
        created_at,
        _loads(metadata),
        _loads(metrics),
        mat_id,
    )


def _loads_memo(text: str, decoded: dict[str, Any] | None) -> Any:
    if decoded is None:
        return _loads(text)
    value = decoded.get(text, _UNSHARED)
    if value is _UNSHARED:
        # Only flat objects are shared (their copies share no list or dict inside); None marks the others.
        flat = text != "{}" and text.startswith("{") and "[" not in text and text.count("{") == 1
        value = decoded[text] = _loads(text) if flat else None
    return _loads(text) if value is None else dict(value)


_UNSHARED = object()  # what `_loads_memo` finds for a text it has not decoded yet


_decode = json.JSONDecoder().raw_decode


def _loads(text: str) -> Any:
    """Decode JSON that `_dumps` wrote (no surrounding whitespace); lookups decode thousands of these."""
    return {} if text == "{}" else _decode(text)[0]
