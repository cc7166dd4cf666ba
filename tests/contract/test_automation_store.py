"""The tick and automation-state records, run over every metadata store backend (the same SQL on each)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from cairn.core.automation import CLAIMED, SKIPPED, TickRecord
from cairn.storage.metadata import MetadataStore
from cairn.testing.metadata import StoreOpener, make_mat, make_step, start_run
from tests.contract.test_metadata_store import BACKENDS


@pytest.fixture(params=list(BACKENDS))
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreOpener]:
    url = BACKENDS[request.param] or request.getfixturevalue("postgres_url")
    with StoreOpener(url, tmp_path) as opener:
        yield opener


@pytest.fixture
def store(open_store: StoreOpener) -> MetadataStore:
    return open_store()


def shared(open_store: StoreOpener) -> None:
    if not open_store.shared:
        pytest.skip("each open_store() call opens a separate database")


def tick(due: float, owner: str = "a", **changes: object) -> TickRecord:
    return replace(TickRecord("schedule", "nightly", due, owner=owner, claimed_at=due, reason="due"), **changes)  # type: ignore[arg-type]


def test_states_are_created_once_with_the_first_since(store: MetadataStore) -> None:
    first = store.ensure_automation_states([("schedule", "nightly"), ("sensor", "landed")], 100.0)
    again = store.ensure_automation_states([("schedule", "nightly"), ("freshness", "features")], 200.0)
    assert first[("schedule", "nightly")].since == 100.0 == again[("schedule", "nightly")].since
    assert again[("freshness", "features")].since == 200.0
    assert set(store.automation_states("sensor")) == {("sensor", "landed")}


def test_a_tick_is_inserted_once_and_moves_the_last_due_time_forward_only(store: MetadataStore) -> None:
    store.ensure_automation_states([("schedule", "nightly")], 0.0)
    assert store.claim_tick(tick(2000.0)) and not store.claim_tick(tick(2000.0, owner="b"))
    assert store.claim_tick(tick(1000.0))  # an older tick (catchup = all) does not move last_due back
    store.record_ticks([tick(500.0, status=SKIPPED, finished_at=2000.0), tick(2000.0, status=SKIPPED)])
    assert store.automation_states()[("schedule", "nightly")].last_due == 2000.0
    assert [(t.due_at, t.status, t.owner) for t in store.ticks()] == [
        (2000.0, CLAIMED, "a"),
        (1000.0, CLAIMED, "a"),
        (500.0, SKIPPED, "a"),
    ]
    assert store.last_ticks()[("schedule", "nightly")].due_at == 2000.0


def test_a_claim_is_started_by_its_owner_or_whoever_took_it_over(store: MetadataStore) -> None:
    store.ensure_automation_states([("schedule", "nightly")], 0.0)
    t = tick(1000.0)
    store.claim_tick(t)
    assert not store.take_over_tick(t, "b", stale_after_s=3600, owner_gone=False)  # fresh and its owner alive
    assert store.take_over_tick(t, "b", stale_after_s=3600, owner_gone=True)
    assert not store.start_tick(t, "a") and store.start_tick(t, "b")
    u = tick(2000.0)
    store.claim_tick(u)
    assert store.release_ticks("a") == 1
    released = store.get_tick(*u.id)
    assert released is not None and released.owner == ""
    assert store.take_over_tick(released, "c", stale_after_s=3600, owner_gone=False)  # released: anyone may
    assert [t.status for t in store.open_ticks()] == ["starting", CLAIMED]


def test_started_and_finished_ticks_keep_their_run_and_latency(store: MetadataStore) -> None:
    store.ensure_automation_states([("schedule", "nightly")], 0.0)
    t = tick(1000.0)
    store.claim_tick(t)
    store.start_tick(t, "a")
    store.tick_started(t, "run-1", 1003.25)
    assert [x.run_id for x in store.open_ticks()] == ["run-1"]
    store.finish_tick(t, "failed", 1010.0, "1 step failed")
    done = store.get_tick(*t.id)
    assert done is not None
    assert (done.status, done.run_id, done.started_at, done.latency_s, done.finished_at, done.error) == (
        "failed", "run-1", 1003.25, 3.25, 1010.0, "1 step failed"
    )  # fmt: skip
    assert store.open_ticks() == []
    assert [x.run_id for x in store.ticks(kind="schedule", name="nightly", limit=5)] == ["run-1"]


def test_pausing_and_resuming_are_audited_and_resuming_moves_since(store: MetadataStore) -> None:
    store.ensure_automation_states([("schedule", "nightly")], 100.0)
    paused = store.set_paused("schedule", "nightly", True, 500.0, "ops")
    assert (paused.paused, paused.since, paused.changed_by) == (True, 100.0, "ops")
    resumed = store.set_paused("schedule", "nightly", False, 900.0, "ops")
    assert (resumed.paused, resumed.since) == (False, 900.0)
    assert [(e.actor, e.action, e.subject) for e in reversed(store.audit_entries())] == [
        ("ops", "schedule.pause", "nightly"),
        ("ops", "schedule.resume", "nightly"),
    ]
    assert store.verify_audit() is None


def test_a_sensor_cursor_moves_by_compare_and_set(store: MetadataStore) -> None:
    state = store.ensure_automation_states([("sensor", "landed")], 0.0)[("sensor", "landed")]
    request = TickRecord("sensor", "landed", 10.0, "data:aa", owner="a", claimed_at=10.0)
    assert store.commit_sensor("landed", state.generation, '{"d1":"v1"}', 10.0, [request]) == [request]
    assert store.commit_sensor("landed", state.generation, '{"d1":"v2"}', 11.0, []) is None
    moved = store.automation_states()[("sensor", "landed")]
    assert (moved.cursor, moved.generation, moved.evaluated_at) == ('{"d1":"v1"}', 1, 10.0)
    store.note_evaluation("sensor", "landed", 12.0, "ValueError: broken")
    assert store.automation_states()[("sensor", "landed")].error == "ValueError: broken"


def test_the_newest_materialization_of_each_asset(store: MetadataStore) -> None:
    start_run(store, "run-1")
    ids = {}
    for key, asset in (("k1", "features"), ("k2", "features"), ("k3", "labels")):
        mat = make_mat(key, asset)
        ids[key] = store.commit_materialization(mat, make_step(mat), None)
    newest = store.newest_materializations(["features", "labels", "never"])
    assert {asset: mat_id for asset, (mat_id, _) in newest.items()} == {"features": ids["k2"], "labels": ids["k3"]}
    assert abs(newest["labels"][1] - store.now()) < 60  # created on the database's clock


def test_two_stores_racing_for_the_same_ticks_claim_each_once(open_store: StoreOpener) -> None:
    shared(open_store)
    stores = [open_store(), open_store()]
    stores[0].ensure_automation_states([("schedule", "nightly")], 0.0)
    won: dict[str, list[float]] = {"a": [], "b": []}
    barrier = threading.Barrier(2)

    def race(store: MetadataStore, owner: str) -> None:
        barrier.wait()
        for n in range(60):
            if store.claim_tick(tick(float(n), owner=owner)):
                won[owner].append(float(n))

    threads = [threading.Thread(target=race, args=(s, o)) for s, o in zip(stores, "ab", strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(won["a"] + won["b"]) == [float(n) for n in range(60)]
    assert len(stores[1].ticks(limit=100)) == 60


def test_two_stores_committing_one_sensor_state_act_once(open_store: StoreOpener) -> None:
    shared(open_store)
    first, second = open_store(), open_store()
    state = first.ensure_automation_states([("sensor", "landed")], 0.0)[("sensor", "landed")]
    requests = [
        TickRecord("sensor", "landed", at, "data:same", owner=o, claimed_at=at) for at, o in ((5.0, "a"), (6.0, "b"))
    ]
    results = [
        first.commit_sensor("landed", state.generation, "x", 5.0, requests[:1]),
        second.commit_sensor("landed", state.generation, "x", 6.0, requests[1:]),
    ]
    assert results == [requests[:1], None]
    assert [t.owner for t in second.ticks(kind="sensor")] == ["a"]
