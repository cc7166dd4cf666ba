"""The contract every metadata store backend must keep: a pytest suite that backends join by subclassing."""

from __future__ import annotations

import dataclasses
import itertools
import multiprocessing
import os
import threading
import time
from dataclasses import replace
from types import TracebackType
from typing import Any

import pytest

from cairn.core.governance import AuditBreak, AuditEntry
from cairn.core.records import (
    ABANDONED,
    CACHED,
    EXECUTED,
    FAILED,
    PENDING,
    RUNNING,
    SUCCEEDED,
    AttemptRecord,
    InputRef,
    LogRecord,
    Materialization,
    RunRecord,
    StepRecord,
)
from cairn.errors import AccessDenied, LeaseLost, StoreError, UsageError
from cairn.storage.audit import append_audit
from cairn.storage.dialect import Cursor
from cairn.storage.metadata import MetadataStore, ObjectRef, open_metadata
from cairn.storage.schema import supported_schema_version


class StoreOpener:
    """Opens stores on one database URL and closes every one of them at the end of a test."""

    def __init__(self, url: str, project_dir: str | os.PathLike[str]) -> None:
        self.url = url
        self.project_dir = project_dir
        self._opened: list[MetadataStore] = []

    @property
    def shared(self) -> bool:
        """Whether every store opened here sees the same database (all but in-memory SQLite)."""
        return self.url not in ("sqlite://", "sqlite:///:memory:")

    def __call__(self) -> MetadataStore:
        store = open_metadata(self.url, self.project_dir)
        self._opened.append(store)
        return store

    def __enter__(self) -> StoreOpener:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for store in self._opened:
            store.close()


def start_run(store: MetadataStore, run_id: str, **changes: object) -> RunRecord:
    """Record a running run and return what was recorded."""
    fields: dict[str, object] = {
        "run_id": run_id,
        "status": RUNNING,
        "selection": "*",
        "created_at": time.time(),
        "args": {"workers": 2, "force": False},
        "environment": {"python": "3.11.9", "packages": {"pyarrow": "16.1.0"}},
        "profile": None,
    }
    fields.update(changes)
    run = RunRecord(**fields)  # type: ignore[arg-type]
    store.create_run(run)
    return run


def make_mat(cache_key: str, asset: str = "features", partition: str = "", **changes: object) -> Materialization:
    """A materialization with distinct, JSON-rich values."""
    fields: dict[str, object] = {
        "asset": asset,
        "partition": partition,
        "cache_key": cache_key,
        "data_version": "b3:data-" + cache_key,
        "size": 5_000_000_000,  # over 32 bits
        "format": "parquet",
        "pytype": "pyarrow.Table",
        "run_id": "run-1",
        "attempt": 1,
        "code_version": "b3:code",
        "code_parts": {"features": "b3:f", "_helper": "b3:h"},
        "params": {"window_days": 7, "cols": ["a", "b"], "nested": {"z": 1, "a": [1.5, None]}},
        "seed": 42,
        "inputs": (InputRef("events", "2026-06-02", "b3:e2"), InputRef("events", "2026-06-01", "b3:e1")),
        "duration_s": 1.25,
        "metadata": {"rows": 10, "schema": {"user_id": "int64"}},
        "metrics": {"auc": 0.875},
    }
    fields.update(changes)
    return Materialization(**fields)  # type: ignore[arg-type]


def make_step(mat: Materialization, status: str = EXECUTED) -> StepRecord:
    """The step record that goes with a materialization."""
    return StepRecord(
        mat.run_id,
        mat.asset,
        mat.partition,
        status,
        "never materialized",
        cache_key=mat.cache_key,
        data_version=mat.data_version,
        attempts=mat.attempt,
        duration_s=mat.duration_s,
    )


def start_attempt(store: MetadataStore, mat: Materialization, token: int | None = None) -> None:
    """Record the running attempt that will produce `mat`."""
    store.start_attempt(
        AttemptRecord(mat.run_id, mat.asset, mat.partition, mat.attempt, RUNNING, time.time(), lease_token=token)
    )


def _attempt(mat: Materialization, run_id: str | None = None) -> AttemptRecord:
    """The running attempt that claims `mat`'s cache key (for `run_id`, or `mat`'s run)."""
    return AttemptRecord(run_id or mat.run_id, mat.asset, mat.partition, mat.attempt, RUNNING, 0.0)


def _same_content(stored: Materialization, expected: Materialization) -> None:
    for name in Materialization.__dataclass_fields__:
        if name not in ("id", "created_at"):
            assert getattr(stored, name) == getattr(expected, name), name


class MetadataStoreContract:
    """Behaviour every `MetadataStore` backend must show.

    A test module subclasses this and provides the ``open_store`` fixture: a `StoreOpener` on the test's
    own, initially empty database, usually parametrized over the backends (a new backend joins the list).
    When each call opens a separate database (in-memory SQLite), the tests that reopen a database or use
    several connections are skipped.
    """

    @pytest.fixture
    def store(self, open_store: StoreOpener) -> MetadataStore:
        return open_store()

    def _needs_shared(self, open_store: StoreOpener) -> None:
        if not open_store.shared:
            pytest.skip("each open_store() call opens a separate database")

    # -- schema ------------------------------------------------------------------------------------
    # The schema tests read and write the schema_version table through the store's private helpers,
    # which every backend shares.

    def test_migrations_are_applied_and_recorded(self, store: MetadataStore) -> None:
        rows = store._rows("test", "SELECT version FROM schema_version ORDER BY version")
        assert [row[0] for row in rows] == list(range(1, supported_schema_version() + 1))

    def test_reopening_keeps_records_and_applies_nothing_twice(self, open_store: StoreOpener) -> None:
        self._needs_shared(open_store)
        with open_store() as first:
            start_run(first, "run-1")
        second = open_store()
        assert second.get_run("run-1") is not None
        rows = second._rows("test", "SELECT COUNT(*) FROM schema_version")
        assert rows[0][0] == supported_schema_version()

    def test_a_database_newer_than_this_cairn_is_refused(self, open_store: StoreOpener) -> None:
        self._needs_shared(open_store)
        with open_store() as first:
            first._write1("test", "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)", (999, 0.0))
        with pytest.raises(StoreError, match=r"schema version 999.*up to \d+.*upgrade cairn"):
            open_store()

    def test_engines_opening_a_new_database_together_apply_each_migration_once(self, open_store: StoreOpener) -> None:
        self._needs_shared(open_store)
        engines = 4
        barrier = threading.Barrier(engines)
        errors: list[BaseException] = []

        def open_one() -> None:
            try:
                barrier.wait(timeout=30)
                open_store().now()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=open_one) for _ in range(engines)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert errors == []
        rows = open_store()._rows("test", "SELECT version FROM schema_version ORDER BY version")
        assert [row[0] for row in rows] == list(range(1, supported_schema_version() + 1))

    def test_now_is_epoch_seconds_from_the_database(self, store: MetadataStore) -> None:
        assert abs(store.now() - time.time()) < 5.0

    def test_attempts_back_to_back_never_run_backwards(self, store: MetadataStore) -> None:
        # Start and end times come from the same clock: an attempt ends no earlier than it started, and
        # the next attempt starts no earlier than the one before it ended (timelines and lineage events
        # are ordered by these times).
        start_run(store, "clock")
        for n in range(1, 201):
            store.start_attempt(AttemptRecord("clock", "a", "", n, RUNNING, 0.0))
            store.finish_attempt("clock", "a", "", n, "failed", "boom")
        attempts = store.attempts("clock")
        assert all(a.finished_at is not None for a in attempts)
        times = [t for a in attempts for t in (a.started_at, a.finished_at or 0.0)]
        assert times == sorted(times)

    def test_close_is_idempotent_and_context_manager_closes(self, open_store: StoreOpener) -> None:
        store = open_store()
        with store:
            store.now()
        store.close()
        with pytest.raises(StoreError):
            store.now()

    # -- runs --------------------------------------------------------------------------------------

    def test_run_lifecycle(self, store: MetadataStore) -> None:
        run = start_run(store, "run-1", profile="bigger_trees")
        stored = store.get_run("run-1")
        assert stored is not None
        assert (stored.status, stored.selection, stored.args, stored.environment, stored.profile) == (
            RUNNING,
            "*",
            run.args,
            run.environment,
            "bigger_trees",
        )
        assert stored.created_at == pytest.approx(run.created_at)
        assert stored.heartbeat_at is not None and stored.finished_at is None
        time.sleep(0.02)
        store.heartbeat_run("run-1")
        beaten = store.get_run("run-1")
        assert beaten is not None and beaten.heartbeat_at is not None
        assert beaten.heartbeat_at > stored.heartbeat_at
        store.finish_run("run-1", SUCCEEDED)
        finished = store.get_run("run-1")
        assert finished is not None and finished.status == SUCCEEDED
        assert finished.finished_at is not None and finished.finished_at >= beaten.heartbeat_at
        assert store.get_run("nope") is None

    def test_runs_share_an_environment_and_list_newest_first(self, store: MetadataStore) -> None:
        for i in range(4):
            start_run(store, f"run-{i}", environment={"python": "3.11"} if i else {})
        assert [run.run_id for run in store.list_runs()] == ["run-3", "run-2", "run-1", "run-0"]
        assert [run.run_id for run in store.list_runs(limit=2)] == ["run-3", "run-2"]
        assert [run.environment for run in store.list_runs()] == [{"python": "3.11"}] * 3 + [{}]

    def test_a_duplicate_run_id_is_refused(self, store: MetadataStore) -> None:
        start_run(store, "run-1")
        with pytest.raises(StoreError, match="run-1"):
            start_run(store, "run-1")

    def test_resolve_run_id(self, store: MetadataStore) -> None:
        with pytest.raises(UsageError, match="no runs are recorded"):
            store.resolve_run_id("latest")
        for run_id in ("20260601-aaa1", "20260601-aab2", "20260602-ccc3"):
            start_run(store, run_id)
        assert store.resolve_run_id("20260601-aaa1") == "20260601-aaa1"
        assert store.resolve_run_id(" 20260602 ") == "20260602-ccc3"
        assert store.resolve_run_id("20260601-aab") == "20260601-aab2"
        assert store.resolve_run_id("latest") == store.resolve_run_id("LAST") == "20260602-ccc3"
        assert store.resolve_run_id("latest~0") == "20260602-ccc3"
        assert store.resolve_run_id("latest~1") == store.resolve_run_id("last~1") == "20260601-aab2"
        assert store.resolve_run_id("latest~2") == "20260601-aaa1"
        with pytest.raises(UsageError, match="not 4 recorded runs"):
            store.resolve_run_id("latest~3")
        with pytest.raises(UsageError, match="a number of runs back"):
            store.resolve_run_id("latest~x")
        with pytest.raises(UsageError, match=r"ambiguous.*20260601-aab2, 20260601-aaa1"):
            store.resolve_run_id("20260601-aa")
        with pytest.raises(UsageError, match="no run id starts with '2027'"):
            store.resolve_run_id("2027")
        with pytest.raises(UsageError, match="required"):
            store.resolve_run_id("  ")

    def test_stale_runs_are_abandoned_with_their_steps_attempts_and_leases(self, store: MetadataStore) -> None:
        start_run(store, "dead")
        start_run(store, "alive")
        start_run(store, "done")
        store.finish_run("done", SUCCEEDED)
        store.upsert_steps(
            [
                StepRecord("dead", "a", "", RUNNING, "r"),
                StepRecord("dead", "b", "", PENDING, "r"),
                StepRecord("dead", "c", "", EXECUTED, "r"),
            ]
        )
        store.start_attempt(AttemptRecord("dead", "a", "", 1, RUNNING, time.time()))
        assert store.acquire_lease("key-a", "dead", "host:1", ttl_s=600) == 1
        time.sleep(0.2)
        store.heartbeat_run("alive")
        assert store.abandon_stale_runs(stale_after_s=0.1) == ["dead"]
        assert store.abandon_stale_runs(stale_after_s=0.1) == []
        statuses = {run.run_id: run.status for run in store.list_runs()}
        assert statuses == {"dead": ABANDONED, "alive": RUNNING, "done": SUCCEEDED}
        dead = store.get_run("dead")
        assert dead is not None and dead.finished_at is not None
        assert [step.status for step in store.run_steps("dead")] == [ABANDONED, ABANDONED, EXECUTED]
        [attempt] = store.attempts("dead")
        assert attempt.status == ABANDONED and attempt.finished_at is not None and attempt.error
        assert store.lease_holder("key-a") is None
        assert store.acquire_lease("key-a", "alive", "host:2", ttl_s=600) == 2

    # -- steps and attempts ------------------------------------------------------------------------

    def test_steps_are_upserted_by_run_asset_and_partition(self, store: MetadataStore) -> None:
        start_run(store, "run-1")
        store.upsert_steps([])
        store.upsert_steps(
            [
                StepRecord("run-1", "b", "2026-06-01", PENDING, "never materialized"),
                StepRecord("run-1", "a", "", PENDING, "code changed: a"),
                StepRecord("run-1", "b", "2026-06-02", PENDING, "input changed: a"),
            ]
        )
        done = StepRecord("run-1", "b", "2026-06-01", FAILED, "never materialized", "k", None, 3, 2.5, "boom")
        store.upsert_steps([done])
        steps = store.run_steps("run-1")
        assert [(s.asset, s.partition, s.status) for s in steps] == [
            ("a", "", PENDING),
            ("b", "2026-06-01", FAILED),
            ("b", "2026-06-02", PENDING),
        ]
        assert steps[1] == done
        assert store.run_steps("other") == []

    def test_attempts_are_recorded_and_finished(self, store: MetadataStore) -> None:
        start_run(store, "run-1")
        store.start_attempt(AttemptRecord("run-1", "a", "p", 1, RUNNING, 0.0, lease_token=7))
        store.start_attempt(AttemptRecord("run-1", "a", "p", 2, RUNNING, time.time()))
        store.finish_attempt("run-1", "a", "p", 1, FAILED, error="ValueError: bad row")
        first, second = store.attempts("run-1")
        assert (first.attempt, first.status, first.error, first.lease_token) == (
            1,
            FAILED,
            "ValueError: bad row",
            7,
        )
        assert first.started_at == pytest.approx(store.now(), abs=5.0)
        assert first.finished_at is not None and first.finished_at >= first.started_at
        assert (second.attempt, second.status, second.finished_at) == (2, RUNNING, None)

    # -- leases ------------------------------------------------------------------------------------

    def test_a_lease_is_exclusive_until_released_and_tokens_only_grow(self, store: MetadataStore) -> None:
        assert store.acquire_lease("k", "run-a", "host:1", ttl_s=600) == 1
        assert store.acquire_lease("k", "run-b", "host:2", ttl_s=600) is None
        holder = store.lease_holder("k")
        assert holder is not None and holder[0] == "run-a" and holder[1] > store.now() + 500
        assert store.acquire_lease("k", "run-a", "host:1", ttl_s=600) == 2  # a retry of the same run
        store.release_lease("k", 1)  # stale token: no effect
        assert store.acquire_lease("k", "run-b", "host:2", ttl_s=600) is None
        store.release_lease("k", 2)
        assert store.lease_holder("k") is None
        assert store.acquire_lease("k", "run-b", "host:2", ttl_s=600) == 3
        assert store.lease_holder("other") is None

    def test_an_expired_lease_is_taken_over_and_renewal_reports_it_lost(self, store: MetadataStore) -> None:
        assert store.acquire_lease("k", "run-a", "host:1", ttl_s=0.05) == 1
        assert store.acquire_lease("j", "run-a", "host:1", ttl_s=600) == 1
        time.sleep(0.1)
        assert store.lease_holder("k") is None
        assert store.acquire_lease("k", "run-b", "host:2", ttl_s=600) == 2
        assert store.renew_leases([("k", 1), ("j", 1)], ttl_s=600) == ["k"]
        assert store.renew_leases([("k", 2)], ttl_s=1000) == []
        holder = store.lease_holder("k")
        assert holder is not None and holder[0] == "run-b" and holder[1] > store.now() + 900
        assert store.renew_leases([], ttl_s=600) == []

    def test_an_expired_lease_nobody_took_can_still_be_renewed(self, store: MetadataStore) -> None:
        assert store.acquire_lease("k", "run-a", "host:1", ttl_s=0.05) == 1
        time.sleep(0.1)
        assert store.renew_leases([("k", 1)], ttl_s=600) == []
        assert store.acquire_lease("k", "run-b", "host:2", ttl_s=600) is None

    def test_a_released_lease_is_lost_for_renewal(self, store: MetadataStore) -> None:
        assert store.acquire_lease("k", "run-a", "host:1", ttl_s=600) == 1
        store.release_lease("k", 1)
        assert store.renew_leases([("k", 1)], ttl_s=600) == ["k"]
        assert store.lease_holder("k") is None

    # -- pool slots --------------------------------------------------------------------------------

    def test_a_pool_hands_out_at_most_its_slots_and_tokens_only_grow(self, store: MetadataStore) -> None:
        first = store.acquire_pool_slot("db", 2, "run-a", "a host:1", ttl_s=600)
        second = store.acquire_pool_slot("db", 2, "run-b", "b host:2", ttl_s=600)
        assert first is not None and second is not None
        assert sorted([first.slot, second.slot]) == [0, 1]
        assert store.acquire_pool_slot("db", 2, "run-c", "c host:3", ttl_s=600) is None
        assert store.acquire_pool_slot("gpu", 1, "run-c", "c host:3", ttl_s=600) is not None  # another pool
        assert [(h.run_id, h.owner) for h in store.pool_holders("db")] == [
            ("run-a", "a host:1"),
            ("run-b", "b host:2"),
        ]
        store.release_pool_slot(first)
        third = store.acquire_pool_slot("db", 2, "run-c", "c host:3", ttl_s=600)
        assert third is not None and (third.slot, third.token) == (first.slot, first.token + 1)
        store.release_pool_slot(first)  # a stale holding: no effect
        assert store.acquire_pool_slot("db", 2, "run-d", "d host:4", ttl_s=600) is None
        assert {h.run_id for h in store.pool_holders("db")} == {"run-b", "run-c"}
        assert store.pool_holders("nope") == []

    def test_an_expired_slot_is_taken_over_and_renewal_reports_it_lost(self, store: MetadataStore) -> None:
        stale = store.acquire_pool_slot("db", 1, "run-a", "a", ttl_s=0.05)
        kept = store.acquire_pool_slot("gpu", 1, "run-a", "a", ttl_s=600)
        assert stale is not None and kept is not None
        time.sleep(0.1)
        assert store.pool_holders("db") == []
        taker = store.acquire_pool_slot("db", 1, "run-b", "b", ttl_s=600)
        assert taker is not None and taker.token == stale.token + 1
        assert store.renew_pool_slots([stale, kept], ttl_s=600) == [stale]
        assert store.renew_pool_slots([taker], ttl_s=1000) == []
        store.release_pool_slot(stale)
        [holder] = store.pool_holders("db")
        assert holder.run_id == "run-b" and holder.expires_at > store.now() + 900
        assert store.renew_pool_slots([], ttl_s=600) == []

    def test_a_smaller_limit_hands_out_only_the_lower_slots(self, store: MetadataStore) -> None:
        held = []
        for i in range(3):
            lease = store.acquire_pool_slot("db", 3, f"run-{i}", "x", ttl_s=600)
            assert lease is not None
            held.append(lease)
        assert [lease.slot for lease in held] == [0, 1, 2]
        store.release_pool_slot(held[2])
        assert store.acquire_pool_slot("db", 2, "run-new", "x", ttl_s=600) is None
        store.release_pool_slot(held[0])
        taken = store.acquire_pool_slot("db", 2, "run-new", "x", ttl_s=600)
        assert taken is not None and taken.slot == 0

    def test_finishing_or_abandoning_a_run_frees_its_slots(self, store: MetadataStore) -> None:
        start_run(store, "done")
        start_run(store, "dead")
        assert store.acquire_pool_slot("db", 3, "done", "x", ttl_s=600) is not None
        assert store.acquire_pool_slot("db", 3, "dead", "x", ttl_s=600) is not None
        assert store.acquire_pool_slot("gpu", 1, "dead", "x", ttl_s=600) is not None
        store.finish_run("done", SUCCEEDED)
        assert [h.run_id for h in store.pool_holders("db")] == ["dead"]
        time.sleep(0.2)
        assert store.abandon_stale_runs(stale_after_s=0.1) == ["dead"]
        assert store.pool_holders("db") == store.pool_holders("gpu") == []

    # -- commits and fencing -----------------------------------------------------------------------

    def test_commit_records_the_result_step_attempt_and_frees_the_lease(self, store: MetadataStore) -> None:
        start_run(store, "run-1")
        mat = make_mat("k1", partition="2026-06-02")
        token = store.acquire_lease("k1", "run-1", "host:1", ttl_s=600)
        assert token == 1
        start_attempt(store, mat, token)
        before = store.now()
        mat_id = store.commit_materialization(mat, make_step(mat), ("k1", token))
        assert mat_id > 0
        found = store.find_by_cache_key("k1")
        assert found is not None and found.id == mat_id
        _same_content(found, mat)
        assert before - 1.0 <= found.created_at <= store.now() + 1.0
        assert store.run_steps("run-1") == [make_step(mat)]
        [attempt] = store.attempts("run-1")
        assert attempt.status == SUCCEEDED and attempt.finished_at is not None
        assert store.lease_holder("k1") is None
        with pytest.raises(LeaseLost):
            store.commit_materialization(mat, make_step(mat), ("k1", token))
        assert store.acquire_lease("k1", "run-2", "host:2", ttl_s=600) == 2

    def test_a_claim_is_granted_held_or_finds_the_committed_result(self, store: MetadataStore) -> None:
        start_run(store, "run-1")
        start_run(store, "run-2")
        mat = make_mat("k1", run_id="run-1", inputs=())
        first = store.claim("k1", "run-1", "host:1", 600, _attempt(mat))
        assert (first.token, first.holder, first.committed) == (1, None, None)
        [recorded] = store.attempts("run-1")
        assert (recorded.status, recorded.lease_token) == (RUNNING, 1)
        held = store.claim("k1", "run-2", "host:2", 600, _attempt(mat, "run-2"))
        assert (held.token, held.holder, held.committed) == (None, ("run-1", "host:1"), None)
        assert store.attempts("run-2") == [], "an attempt that was not granted is not recorded"
        store.commit_materialization(mat, make_step(mat), ("k1", 1))
        after = store.claim("k1", "run-2", "host:2", 600, _attempt(mat, "run-2"))
        assert after.token == 2 and after.holder is None
        assert after.committed is not None and after.committed.data_version == mat.data_version

    def test_ending_an_attempt_records_it_and_frees_its_lease_in_one_call(self, store: MetadataStore) -> None:
        start_run(store, "run-1")
        mat = make_mat("k1", run_id="run-1", inputs=())
        claim = store.claim("k1", "run-1", "host:1", 600, _attempt(mat))
        assert claim.token is not None
        store.end_attempt("run-1", mat.asset, mat.partition, mat.attempt, FAILED, "boom", ("k1", claim.token))
        [ended] = store.attempts("run-1")
        assert (ended.status, ended.error) == (FAILED, "boom") and ended.finished_at is not None
        assert store.lease_holder("k1") is None
        retry = store.claim("k1", "run-1", "host:1", 600, replace(_attempt(mat), attempt=2))
        assert retry.token == 2
        store.end_attempt("run-1", mat.asset, mat.partition, 2, FAILED, "stale", ("k1", 1))  # a stale token
        assert store.lease_holder("k1") is not None, "a stale token must not free the current lease"
        store.end_attempt("run-1", mat.asset, mat.partition, 2, FAILED, "again")
        assert store.lease_holder("k1") is not None

    def test_commit_without_a_lease(self, store: MetadataStore) -> None:
        start_run(store, "run-1")
        mat = make_mat("k1", inputs=())
        mat_id = store.commit_materialization(mat, make_step(mat), None)
        found = store.find_by_cache_key("k1")
        assert found is not None and found.id == mat_id and found.inputs == ()

    def test_a_commit_with_a_stale_token_is_rejected_and_writes_nothing(self, store: MetadataStore) -> None:
        start_run(store, "run-1")
        start_run(store, "run-2")
        mat = make_mat("k1")
        assert store.acquire_lease("k1", "run-1", "host:1", ttl_s=0.05) == 1
        start_attempt(store, mat, 1)
        time.sleep(0.1)
        assert store.acquire_lease("k1", "run-2", "host:2", ttl_s=600) == 2
        with pytest.raises(LeaseLost, match=r"k1 \(token 1\).*not committed"):
            store.commit_materialization(mat, make_step(mat), ("k1", 1))
        assert store.find_by_cache_key("k1") is None
        assert store.run_steps("run-1") == []
        assert [a.status for a in store.attempts("run-1")] == [RUNNING]
        holder = store.lease_holder("k1")
        assert holder is not None and holder[0] == "run-2"

    def test_a_group_commit_records_every_result_whose_lease_is_held_and_skips_a_lost_one(
        self, store: MetadataStore
    ) -> None:
        start_run(store, "run-1")
        start_run(store, "run-2")
        mats = [make_mat(key, asset=f"a{i}", run_id="run-1") for i, key in enumerate(("k1", "k2", "k3"))]
        for mat in mats:
            assert store.claim(mat.cache_key, "run-1", "host:1", 600, _attempt(mat)).token == 1
        store.commit_materialization(make_mat("k2", asset="a1", run_id="run-2"), make_step(mats[1]), None)
        store.end_attempt("run-1", "a1", "", 1, FAILED, "taken over", ("k2", 1))  # the lease of k2 is gone
        ids = store.commit_materializations([(mat, make_step(mat), (mat.cache_key, 1), None) for mat in mats])
        assert ids[0] is not None and ids[2] is not None and ids[1] is None
        assert [m.run_id for m in store.materializations("a1")] == ["run-2"], "nothing of the lost one is written"
        for mat, mat_id in ((mats[0], ids[0]), (mats[2], ids[2])):
            found = store.find_by_cache_key(mat.cache_key)
            assert found is not None and found.id == mat_id
            _same_content(found, mat)
            assert store.lease_holder(mat.cache_key) is None
        assert {a.asset: a.status for a in store.attempts("run-1")} == {"a0": SUCCEEDED, "a1": FAILED, "a2": SUCCEEDED}
        assert store.commit_materializations([]) == []

    def test_fencing_holds_after_the_key_was_committed_and_leased_again(self, store: MetadataStore) -> None:
        for run_id in ("run-1", "run-2", "run-3"):
            start_run(store, run_id)
        assert store.acquire_lease("k1", "run-1", "host:1", ttl_s=0.05) == 1
        time.sleep(0.1)
        second = make_mat("k1", run_id="run-2")
        assert store.acquire_lease("k1", "run-2", "host:2", ttl_s=600) == 2
        store.commit_materialization(second, make_step(second), ("k1", 2))
        assert store.acquire_lease("k1", "run-3", "host:3", ttl_s=600) == 3
        late = make_mat("k1", run_id="run-1")
        with pytest.raises(LeaseLost):
            store.commit_materialization(late, make_step(late), ("k1", 1))
        assert [m.run_id for m in store.materializations("features")] == ["run-2"]

    # -- lookups -----------------------------------------------------------------------------------

    def test_lookups_by_cache_key_return_the_newest(self, store: MetadataStore) -> None:
        start_run(store, "run-1")
        for key, version in (("k1", "v1"), ("k2", "v2"), ("k1", "v3")):
            mat = make_mat(key, data_version=version)
            store.commit_materialization(mat, make_step(mat), None)
        newest = store.find_by_cache_key("k1")
        assert newest is not None and newest.data_version == "v3"
        assert store.find_by_cache_key("nope") is None
        found = store.find_by_cache_keys(["k1", "k2", "nope", "k1"])
        assert {key: mat.data_version for key, mat in found.items()} == {"k1": "v3", "k2": "v2"}
        assert found["k1"].inputs == make_mat("k1").inputs
        assert store.find_by_cache_keys([]) == {}

    def test_bulk_lookup_splits_long_key_lists(self, store: MetadataStore) -> None:
        start_run(store, "run-1")
        keys = [f"k{i:04d}" for i in range(1203)]
        for i, key in enumerate(keys):
            mat = make_mat(key, inputs=(InputRef("src", str(i), f"v{i}"),))
            store.commit_materialization(mat, make_step(mat), None)
        found = store.find_by_cache_keys([*keys, "missing"])
        assert sorted(found) == keys
        assert all(mat.inputs == (InputRef("src", str(i), f"v{i}"),) for i, mat in enumerate(found.values()))

    def test_latest_materializations_per_asset_and_partition(self, store: MetadataStore) -> None:
        start_run(store, "run-1")
        for key, asset, partition in (
            ("k1", "a", ""),
            ("k2", "a", ""),
            ("k3", "b", "p1"),
            ("k4", "b", "p2"),
            ("k5", "b", "p1"),
        ):
            mat = make_mat(key, asset=asset, partition=partition, duration_s=float(key[1]))
            store.commit_materialization(mat, make_step(mat), None)
        latest_a = store.latest_materialization("a")
        assert latest_a is not None and latest_a.cache_key == "k2"
        latest_b = store.latest_materialization("b", "p1")
        assert latest_b is not None and latest_b.cache_key == "k5" and latest_b.inputs == make_mat("x").inputs
        assert store.latest_materialization("b") is None
        latest = store.latest_materializations()
        assert {pair: mat.cache_key for pair, mat in latest.items()} == {
            ("a", ""): "k2",
            ("b", "p1"): "k5",
            ("b", "p2"): "k4",
        }
        assert latest[("b", "p2")].inputs == make_mat("x").inputs
        # What planning reads of them: the same materializations, each as its reference with the stored id.
        assert store.latest_refs() == {pair: mat.ref for pair, mat in latest.items()}
        assert all(ref.id > 0 for ref in store.latest_refs().values())
        assert [m.cache_key for m in store.materializations("b")] == ["k5", "k4", "k3"]
        assert [m.cache_key for m in store.materializations("b", "p1")] == ["k5", "k3"]
        assert [m.cache_key for m in store.materializations("b", limit=1)] == ["k5"]
        assert store.materializations("nope") == []

    def test_mean_durations_use_the_recent_materializations(self, store: MetadataStore) -> None:
        start_run(store, "run-1")
        for i, duration in enumerate([100.0, 1.0, 2.0, 3.0, 4.0, 5.0]):
            mat = make_mat(f"a{i}", asset="a", duration_s=duration)
            store.commit_materialization(mat, make_step(mat), None)
        mat = make_mat("b0", asset="b", duration_s=0.5)
        store.commit_materialization(mat, make_step(mat), None)
        assert store.mean_durations() == {"a": pytest.approx(3.0), "b": pytest.approx(0.5)}

    def test_referenced_digests(self, store: MetadataStore) -> None:
        start_run(store, "run-1")
        assert store.referenced_digests() == set()
        for key, version in (("k1", "b3:x"), ("k2", "b3:y"), ("k3", "b3:x")):
            mat = make_mat(key, data_version=version)
            store.commit_materialization(mat, make_step(mat), None)
        assert store.referenced_digests() == {"b3:x", "b3:y"}

    def test_referenced_objects_list_each_object_with_its_size_format_and_owner(self, store: MetadataStore) -> None:
        start_run(store, "run-1")
        assert store.referenced_objects() == []
        for key, version, asset in (("k1", "b3:x", "a"), ("k2", "b3:y", "b"), ("k3", "b3:x", "a")):
            mat = make_mat(key, asset=asset, data_version=version, size=7, format="files")
            store.commit_materialization(mat, make_step(mat), None)
        assert store.referenced_objects() == [
            ObjectRef("b3:x", 7, "files", "a", ""),
            ObjectRef("b3:y", 7, "files", "b", ""),
        ]

    def test_materializations_with_a_data_version(self, store: MetadataStore) -> None:
        start_run(store, "run-1")
        for key, version, partition in (("k1", "v1", "p"), ("k2", "v2", "p"), ("k3", "v1", "p"), ("k4", "v1", "q")):
            mat = make_mat(key, data_version=version, partition=partition)
            store.commit_materialization(mat, make_step(mat), None)
        found = store.materializations_with_version("features", "p", "v1")
        assert [m.cache_key for m in found] == ["k3", "k1"] and found[0].inputs == make_mat("x").inputs
        assert [m.cache_key for m in store.materializations_with_version("features", "p", "v1", limit=1)] == ["k3"]
        assert store.materializations_with_version("features", "p", "v9") == []
        assert store.materializations_with_version("other", "p", "v1") == []

    def test_run_materializations_are_what_each_step_produced_or_reused(self, store: MetadataStore) -> None:
        start_run(store, "run-1")
        reused = make_mat("k1", asset="a", run_id="run-1")
        store.commit_materialization(reused, make_step(reused), None)
        time.sleep(0.02)
        start_run(store, "run-2", created_at=store.now() + 0.001)
        time.sleep(0.02)
        fresh = make_mat("k2", asset="b", run_id="run-2")
        store.commit_materialization(fresh, make_step(fresh), None)
        cached = dataclasses.replace(make_step(reused, CACHED), run_id="run-2")
        failed = StepRecord("run-2", "c", "", FAILED, "never materialized", cache_key="k9", attempts=1)
        store.upsert_steps([cached, failed])
        start_run(store, "run-3")
        again = make_mat("k1", asset="a", run_id="run-3")  # the same key, committed after run-2 started
        store.commit_materialization(again, make_step(again), None)
        found = store.run_materializations("run-2")
        assert {pair: (m.cache_key, m.run_id) for pair, m in found.items()} == {
            ("a", ""): ("k1", "run-1"),
            ("b", ""): ("k2", "run-2"),
        }
        assert found[("a", "")].inputs == reused.inputs
        assert store.run_materializations("run-3")[("a", "")].run_id == "run-3"
        assert store.run_materializations("nope") == {}

    def test_runs_with_a_status_newest_first(self, store: MetadataStore) -> None:
        start_run(store, "run-1")
        start_run(store, "run-2")
        start_run(store, "run-3")
        store.finish_run("run-2", SUCCEEDED)
        assert [r.run_id for r in store.runs_with_status(RUNNING)] == ["run-3", "run-1"]
        assert [r.run_id for r in store.runs_with_status(SUCCEEDED)] == ["run-2"]
        assert store.runs_with_status(FAILED) == []
        assert [r.run_id for r in store.runs_with_status(RUNNING, limit=1)] == ["run-3"]

    def test_values_that_are_not_json_are_refused(self, store: MetadataStore) -> None:
        start_run(store, "run-1")
        mat = make_mat("k1", params={"when": object()})
        with pytest.raises(StoreError, match="params of features"):
            store.commit_materialization(mat, make_step(mat), None)
        assert store.find_by_cache_key("k1") is None

    # -- logs --------------------------------------------------------------------------------------

    def test_logs_are_kept_in_order_and_filtered(self, store: MetadataStore) -> None:
        start_run(store, "run-1")
        records = [
            LogRecord("run-1", "a", "", 1, 10.0, "INFO", "start"),
            LogRecord("run-1", "b", "p1", 1, 11.0, "WARNING", "late data"),
            LogRecord("run-1", "b", "p2", 2, 12.0, "ERROR", "boom"),
            LogRecord("run-1", "a", "", 1, 9.0, "INFO", "done, with\nnewline"),
        ]
        store.add_logs(records)
        store.add_logs([])
        assert store.logs("run-1") == records
        assert store.logs("run-1", "a") == [records[0], records[3]]
        assert store.logs("run-1", "b", "p2") == [records[2]]
        assert store.logs("run-2") == []

    # -- two connections ---------------------------------------------------------------------------

    def test_two_stores_on_one_database_see_commits_and_contend(self, open_store: StoreOpener) -> None:
        self._needs_shared(open_store)
        first, second = open_store(), open_store()
        start_run(first, "run-1")
        start_run(second, "run-2")
        assert first.acquire_lease("k1", "run-1", "host:1", ttl_s=600) == 1
        assert second.acquire_lease("k1", "run-2", "host:2", ttl_s=600) is None
        holder = second.lease_holder("k1")
        assert holder is not None and holder[0] == "run-1"
        mat = make_mat("k1", run_id="run-1")
        mat_id = first.commit_materialization(mat, make_step(mat), ("k1", 1))
        found = second.find_by_cache_key("k1")
        assert found is not None and found.id == mat_id
        assert second.acquire_lease("k1", "run-2", "host:2", ttl_s=600) == 2
        with pytest.raises(LeaseLost):
            first.commit_materialization(mat, make_step(mat), ("k1", 1))
        assert {run.run_id for run in first.list_runs()} == {"run-1", "run-2"}

    def test_two_stores_count_the_slots_of_one_pool_together(self, open_store: StoreOpener) -> None:
        self._needs_shared(open_store)
        first, second = open_store(), open_store()
        held = first.acquire_pool_slot("db", 1, "run-1", "engine 1", ttl_s=600)
        assert held is not None
        assert second.acquire_pool_slot("db", 1, "run-2", "engine 2", ttl_s=600) is None
        assert [h.owner for h in second.pool_holders("db")] == ["engine 1"]
        first.release_pool_slot(held)
        taken = second.acquire_pool_slot("db", 1, "run-2", "engine 2", ttl_s=600)
        assert taken is not None and taken.token == held.token + 1


# -- identity and audit ----------------------------------------------------------------------------


def append_entries(url: str, project_dir: str, actor: str, count: int, start: Any) -> None:
    """Append `count` audit rows as `actor` from a store of its own, once every process passed the
    `start` barrier (run in a process)."""
    with open_metadata(url, project_dir) as store:
        start.wait(60)
        for n in range(count):
            store.append_audit(actor, "test.append", f"item-{n}", {"n": n})


def _tamper(store: MetadataStore, *statements: str) -> None:
    """Change the audit table behind cairn's back, as someone with write access to the database could."""
    for statement in statements:
        store._write1("tamper with the audit log", statement, ())


class IdentityAuditContract:
    """Users and the hash-chained audit log, on every backend: the same ``open_store`` fixture as
    `MetadataStoreContract`."""

    @pytest.fixture
    def store(self, open_store: StoreOpener) -> MetadataStore:
        return open_store()

    def _append(self, store: MetadataStore, count: int) -> list[AuditEntry]:
        return [store.append_audit("alice", "test.act", f"thing-{n}", {"n": n, "why": "ü"}) for n in range(count)]

    # -- users -------------------------------------------------------------------------------------

    def test_users_are_added_found_by_token_hash_and_listed_by_name(self, store: MetadataStore) -> None:
        assert not store.has_users()
        root = store.insert_user("root", "admin", "b3:root", "root", first=True)
        store.insert_user("bob", "viewer", "b3:bob", "root")
        assert store.has_users()
        assert [u.name for u in store.users()] == ["bob", "root"]
        found = store.user_by_token_hash("b3:bob")
        assert found is not None and (found.name, found.role, found.created_by) == ("bob", "viewer", "root")
        assert found.enabled and store.user_by_token_hash("b3:nobody") is None
        assert store.user("root") == root and abs(root.created_at - store.now()) < 60
        added = store.audit_entries()
        assert [(e.action, e.subject, e.actor) for e in added] == [
            ("user.add", "bob", "root"),
            ("user.add", "root", "root"),
        ]
        assert added[1].detail == {"role": "admin", "bootstrap": True} and added[1].at == root.created_at

    def test_the_first_user_rule_and_duplicate_names_are_enforced(self, store: MetadataStore) -> None:
        store.insert_user("root", "admin", "b3:root", "root", first=True)
        with pytest.raises(AccessDenied, match="users are defined already"):
            store.insert_user("mallory", "admin", "b3:m", "mallory", first=True)
        with pytest.raises(UsageError, match="user 'root' already exists"):
            store.insert_user("root", "viewer", "b3:other", "root")
        assert [u.name for u in store.users()] == ["root"] and len(store.audit_entries()) == 1

    def test_role_changes_disabling_and_new_tokens_are_recorded_and_audited(self, store: MetadataStore) -> None:
        store.insert_user("root", "admin", "b3:root", "root", first=True)
        store.insert_user("bob", "viewer", "b3:bob", "root")
        assert store.set_user_role("bob", "operator", "root").role == "operator"
        assert store.set_user_role("bob", "operator", "root").role == "operator"  # no change, no audit row
        store.replace_token_hash("bob", "b3:bob2", "bob")
        assert store.user_by_token_hash("b3:bob") is None
        assert store.user_by_token_hash("b3:bob2") == store.user("bob")
        disabled = store.disable_user("bob", "root")
        assert disabled.disabled_at is not None and store.user("bob") == disabled
        assert [(e.action, e.actor, e.detail) for e in reversed(store.audit_entries())][2:] == [
            ("user.role", "root", {"from": "viewer", "to": "operator"}),
            ("user.rotate", "bob", {}),
            ("user.disable", "root", {"role": "operator"}),
        ]
        with pytest.raises(UsageError, match="user 'bob' is disabled"):
            store.set_user_role("bob", "admin", "root")
        with pytest.raises(UsageError, match=r"user 'bobb' does not exist\. Did you mean 'bob'\?"):
            store.disable_user("bobb", "root")

    def test_the_last_enabled_admin_can_be_neither_demoted_nor_disabled(self, store: MetadataStore) -> None:
        store.insert_user("root", "admin", "b3:root", "root", first=True)
        with pytest.raises(UsageError, match="would leave no enabled admin"):
            store.set_user_role("root", "approver", "root")
        with pytest.raises(UsageError, match="would leave no enabled admin"):
            store.disable_user("root", "root")
        store.insert_user("ada", "admin", "b3:ada", "root")
        store.disable_user("root", "ada")
        with pytest.raises(UsageError, match="disabling 'ada' would leave no enabled admin"):
            store.disable_user("ada", "ada")

    # -- the audit chain ---------------------------------------------------------------------------

    def test_appended_rows_form_one_chain_that_verifies(self, store: MetadataStore) -> None:
        assert store.verify_audit() is None and store.audit_head() == (0, "")
        appended = self._append(store, 5)
        assert [e.seq for e in appended] == [1, 2, 3, 4, 5]
        assert appended[0].prev_hash == "" and all(b.prev_hash == a.hash for a, b in itertools.pairwise(appended))
        assert store.audit_entries() == appended[::-1]
        assert store.audit_head() == (5, appended[-1].hash)
        assert store.verify_audit() is None

    def test_audit_entries_are_filtered_and_paged(self, store: MetadataStore) -> None:
        store.append_audit("alice", "model.approve", "recsys@3", {"reason": "gates pass"})
        store.append_audit("bob", "model.promote", "recsys@3", {"alias": "champion"})
        store.append_audit("bob", "user.add", "carol", {"role": "viewer"})
        assert [e.seq for e in store.audit_entries(2)] == [3, 2]
        assert [e.seq for e in store.audit_entries(actor="bob")] == [3, 2]
        assert [e.seq for e in store.audit_entries(action="model.*")] == [2, 1]
        assert [e.seq for e in store.audit_entries(action="model.promote", subject="recsys@3")] == [2]
        assert [e.seq for e in store.audit_entries(before=2)] == [1]
        assert store.audit_entries(1)[0].detail == {"role": "viewer"}

    def test_an_edited_field_is_named_at_its_row(self, store: MetadataStore) -> None:
        self._append(store, 6)
        _tamper(store, "UPDATE audit SET actor = 'mallory' WHERE seq = 3")
        broken = store.verify_audit()
        assert broken is not None and (broken.seq, broken.kind) == (3, "edited")
        assert "row 3 (test.act thing-2 by mallory) does not match its hash" in broken.message

    def test_an_edited_detail_or_time_is_found_too(self, store: MetadataStore) -> None:
        self._append(store, 4)
        _tamper(store, "UPDATE audit SET detail = '{\"n\":9}' WHERE seq = 4")
        broken = store.verify_audit()
        assert broken is not None and (broken.seq, broken.kind) == (4, "edited")
        assert store.audit_entries(1)[0].detail == {"n": 9}
        _tamper(
            store, "UPDATE audit SET detail = 'not json' WHERE seq = 4", "UPDATE audit SET at = at + 1 WHERE seq = 2"
        )
        broken = store.verify_audit()
        assert broken is not None and (broken.seq, broken.kind) == (2, "edited")
        assert store.audit_entries(1)[0].detail == {"unparsed": "not json"}

    def test_a_deleted_row_is_named_as_missing(self, store: MetadataStore) -> None:
        self._append(store, 6)
        _tamper(store, "DELETE FROM audit WHERE seq = 4")
        broken = store.verify_audit()
        assert broken is not None and (broken.seq, broken.kind) == (4, "missing")
        assert "row 4 is missing: the chain goes from row 3 to row 5" in broken.message

    def test_deleted_first_and_last_rows_are_named(self, store: MetadataStore) -> None:
        self._append(store, 5)
        _tamper(store, "DELETE FROM audit WHERE seq >= 4")
        broken = store.verify_audit()
        assert broken is not None and (broken.seq, broken.kind) == (4, "missing")
        assert "rows 4 to 5 missing: the head records 5 rows but the chain ends at row 3" in broken.message
        _tamper(store, "DELETE FROM audit WHERE seq = 1")
        assert store.verify_audit() == AuditBreak(
            1, "missing", "row 1 is missing: the chain goes from the start to row 2 (rows were deleted)"
        )

    def test_reordered_rows_are_named_at_the_first_one_out_of_place(self, store: MetadataStore) -> None:
        self._append(store, 6)
        _tamper(
            store,
            "UPDATE audit SET seq = -1 WHERE seq = 3",
            "UPDATE audit SET seq = 3 WHERE seq = 4",
            "UPDATE audit SET seq = 4 WHERE seq = -1",
        )
        broken = store.verify_audit()
        assert broken is not None and (broken.seq, broken.kind) == (3, "out_of_order")
        assert "row 3 does not follow row 2" in broken.message

    def test_a_rewritten_head_or_a_row_added_behind_it_is_found(self, store: MetadataStore) -> None:
        rows = self._append(store, 3)
        _tamper(store, "UPDATE audit_head SET hash = 'b3:forged' WHERE id = 1")
        broken = store.verify_audit()
        assert broken is not None and (broken.seq, broken.kind) == (3, "head")
        _tamper(store, f"UPDATE audit_head SET seq = 2, hash = '{rows[1].hash}' WHERE id = 1")
        broken = store.verify_audit()
        assert broken is not None and (broken.seq, broken.kind) == (3, "head")
        assert "row 3 is not recorded by the head" in broken.message

    def test_an_audit_row_commits_or_rolls_back_with_its_action(self, store: MetadataStore) -> None:
        """`append_audit` inside a caller's transaction: one failing statement after it undoes both."""

        def promote(cur: Cursor) -> AuditEntry:
            cur.execute(
                store._sql("INSERT INTO snapshots (name, created_at, selection) VALUES (?, {now}, ?)"), ("s", "*")
            )
            return append_audit(cur, store._sql, "alice", "snapshot.create", "s", {"entries": 0})

        entry = store._transaction("test", promote)
        assert store.audit_entries() == [entry] and [s.name for s in store.snapshots()] == ["s"]

        def fails(cur: Cursor) -> None:
            append_audit(cur, store._sql, "alice", "snapshot.create", "t", {})
            cur.execute(
                store._sql("INSERT INTO snapshots (name, created_at, selection) VALUES (?, {now}, ?)"), ("s", "*")
            )

        with pytest.raises(StoreError):
            store._transaction("test", fails)
        assert store.audit_entries() == [entry] and store.audit_head() == (1, entry.hash)
        assert store.verify_audit() is None

    def test_detail_that_is_not_json_is_refused_before_anything_is_written(self, store: MetadataStore) -> None:
        with pytest.raises(StoreError, match="JSON-compatible"):
            store.append_audit("alice", "test.act", "x", {"when": object()})
        with pytest.raises(StoreError, match="JSON-compatible"):
            store.append_audit("alice", "test.act", "x", {"ratio": float("nan")})
        assert store.audit_head() == (0, "")

    def test_two_processes_appending_together_make_one_chain(self, open_store: StoreOpener) -> None:
        """2 x 200 appends from two processes on one database: no fork, no duplicate or missing seq."""
        if not open_store.shared:
            pytest.skip("each open_store() call opens a separate database")
        first = open_store()  # applies the migrations before the processes start
        context = multiprocessing.get_context("spawn")
        start = context.Barrier(2)
        workers = [
            context.Process(target=append_entries, args=(open_store.url, str(open_store.project_dir), name, 200, start))
            for name in ("one", "two")
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=240)
        assert [worker.exitcode for worker in workers] == [0, 0]
        entries = first.audit_entries(1000)[::-1]
        assert [e.seq for e in entries] == list(range(1, 401))
        for name in ("one", "two"):
            assert [e.detail["n"] for e in entries if e.actor == name] == list(range(200))
        assert first.verify_audit() is None and first.audit_head() == (400, entries[-1].hash)
