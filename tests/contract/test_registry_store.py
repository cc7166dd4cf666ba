"""The SQL of the model registry and aliases (`cairn.storage.registry`), over every metadata store backend."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cairn.core.governance import AliasMove, ApprovalRecord
from cairn.errors import LeaseLost
from cairn.storage.metadata import MetadataStore
from cairn.storage.registry import previous_targets
from cairn.testing.metadata import StoreOpener, make_mat, make_step, start_run
from tests.contract.test_metadata_store import BACKENDS


@pytest.fixture(params=list(BACKENDS))
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreOpener]:
    url = BACKENDS[request.param] or request.getfixturevalue("postgres_url")
    with StoreOpener(url, tmp_path) as opener:
        yield opener


@pytest.fixture
def store(open_store: StoreOpener) -> MetadataStore:
    meta = open_store()
    start_run(meta, "run-1")
    return meta


def commit(store: MetadataStore, key: str, asset: str = "ranker", **changes: object) -> int:
    mat = make_mat(key, asset, **changes)
    return store.commit_materialization(mat, make_step(mat), None)


def move(alias: str, asset: str, mat_id: int | None, snapshot: str | None = None, action: str = "set") -> AliasMove:
    return AliasMove(alias, asset, mat_id, snapshot, action, "alice", "why", f"alias.{action}", asset, {"alias": alias})


def test_versions_are_numbered_per_model_once_per_data_version(store: MetadataStore) -> None:
    first, second, again, other = (commit(store, k) for k in ("k1", "k2", "k3", "k4"))
    assert store.register_model_version("ranker", first, "b3:a", "run-1", "alice") == 1
    assert store.register_model_version("ranker", second, "b3:b", "run-1", "bob") == 2
    assert store.register_model_version("ranker", again, "b3:a", "run-1", "carol") == 1  # the same bytes
    assert store.register_model_version("scorer", other, "b3:a", "run-1", "alice") == 1
    versions = store.model_versions()
    assert [(v.name, v.version, v.mat_id, v.author) for v in versions] == [
        ("ranker", 1, first, "alice"),
        ("ranker", 2, second, "bob"),
        ("scorer", 1, other, "alice"),
    ]
    assert versions[0].created_at > 0
    assert store.model_version("ranker") == versions[1]
    assert store.model_version("ranker", 1) == versions[0]
    assert store.model_version("ranker", 7) is None
    assert store.is_model("ranker") and not store.is_model("features")


def test_a_version_is_found_by_any_materialization_of_its_data_version(store: MetadataStore) -> None:
    first = commit(store, "k1", data_version="b3:same")
    rerun = commit(store, "k2", data_version="b3:same")
    store.register_model_version("ranker", first, "b3:same", "run-1", "alice")
    found = store.model_version_at("ranker", rerun)
    assert found is not None and found.version == 1 and found.mat_id == first
    assert store.model_version_at("scorer", rerun) is None


def test_engines_registering_together_get_distinct_numbers(open_store: StoreOpener) -> None:
    if not open_store.shared:
        pytest.skip("each open_store() call opens a separate database")
    stores = [open_store() for _ in range(4)]
    start_run(stores[0], "run-1")
    mat_ids = [commit(stores[0], f"k{i}") for i in range(40)]
    numbers: list[int] = []
    lock = threading.Lock()

    def register(meta: MetadataStore, part: list[int]) -> None:
        for mat_id in part:
            number = meta.register_model_version("ranker", mat_id, f"b3:{mat_id}", "run-1", "alice")
            with lock:
                numbers.append(number)

    threads = [threading.Thread(target=register, args=(s, mat_ids[i::4])) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(numbers) == list(range(1, 41))
    assert len(stores[0].model_versions("ranker")) == 40


def test_approvals_are_kept_once_per_approver_with_their_current_role(store: MetadataStore) -> None:
    store.insert_user("admin", "admin", "b3:t0", "admin", first=True)
    store.insert_user("bob", "approver", "b3:t1", "admin")
    store.insert_user("carol", "approver", "b3:t2", "admin")
    mat_id = commit(store, "k1")
    store.register_model_version("ranker", mat_id, "b3:a", "run-1", "alice")
    entry = store.add_approval(ApprovalRecord("ranker", 1, "bob", "card ok", 0.0), {"reason": "card ok"})
    assert entry is not None and (entry.actor, entry.action, entry.subject) == ("bob", "model.approve", "ranker@1")
    assert store.add_approval(ApprovalRecord("ranker", 1, "bob", "again", 0.0), {}) is None
    store.add_approval(ApprovalRecord("ranker", 1, "carol", "fine", 0.0), {})
    store.add_approval(ApprovalRecord("ranker", 1, "ghost", "gone", 0.0), {})
    store.disable_user("carol", "admin")
    approvals = store.approvals("ranker", 1)
    assert [(a.approver, a.reason, a.approver_role) for a in approvals] == [
        ("bob", "card ok", "approver"),
        ("carol", "fine", None),
        ("ghost", "gone", None),
    ]
    assert store.approvals("ranker", 2) == [] and len(store.approvals()) == 3


def test_an_alias_moves_with_its_history_and_audit_row_and_an_unchanged_target_writes_nothing(
    store: MetadataStore,
) -> None:
    first, second = commit(store, "k1", "features"), commit(store, "k2", "features")
    created = store.move_alias(move("production", "features", first))
    assert created.before is None and created.audit is not None
    assert created.audit.detail == {"alias": "production", "from": None, "to": {"mat_id": first}}
    moved = store.move_alias(move("production", "features", second))
    assert moved.before == (first, None) and moved.alias.mat_id == second
    unchanged = store.move_alias(move("production", "features", second))
    assert unchanged.audit is None and unchanged.alias == moved.alias
    current = store.alias("production", "features")
    assert current is not None and (current.mat_id, current.snapshot, current.moved_by) == (second, None, "alice")
    target = store.alias_target("production", "features")
    assert target is not None and target.id == second
    assert [m.mat_id for m in store.alias_moves("production", "features")] == [first, second]
    assert [e.action for e in store.audit_entries()] == ["alias.set", "alias.set"]
    assert store.verify_audit() is None


def test_a_rollback_walks_the_history_back_as_a_stack(store: MetadataStore) -> None:
    ids = [commit(store, f"k{i}", "features") for i in range(3)]
    store.create_snapshot("launch", "features", [("features", "", ids[0])])
    for mat_id in ids:
        store.move_alias(move("production", "features", mat_id))
    store.move_alias(move("production", "features", None, "launch"))
    seen = []
    while (result := store.roll_back_alias(move("production", "features", None, action="rollback"))) is not None:
        seen.append(result.alias.mat_id)
        assert result.audit is not None and result.audit.detail["to"] == {"mat_id": result.alias.mat_id}
    assert seen == [ids[2], ids[1], ids[0]]
    assert store.alias_target("production", "features") is not None
    assert store.roll_back_alias(move("staging", "features", None, action="rollback")) is None  # never set
    assert [m.action for m in store.alias_moves("production")].count("rollback") == 3
    assert store.alias_target("production", "features").id == ids[0]  # type: ignore[union-attr]


def test_model_versions_appear_in_the_audit_detail_of_alias_moves(store: MetadataStore) -> None:
    first, second = commit(store, "k1"), commit(store, "k2")
    store.register_model_version("ranker", first, "b3:a", "run-1", "alice")
    store.register_model_version("ranker", second, "b3:b", "run-1", "alice")
    store.move_alias(move("champion", "ranker", first, action="promote"))
    promoted = store.move_alias(move("champion", "ranker", second, action="promote"))
    assert promoted.audit is not None
    assert promoted.audit.detail["from"] == {"mat_id": first, "version": 1}
    assert promoted.audit.detail["to"] == {"mat_id": second, "version": 2}


def test_aliases_are_listed_by_asset_and_alias(store: MetadataStore) -> None:
    mat_id = commit(store, "k1", "features")
    store.move_alias(move("production", "features", mat_id))
    store.move_alias(move("canary", "features", mat_id))
    assert [(a.alias, a.asset) for a in store.aliases()] == [("canary", "features"), ("production", "features")]
    assert store.aliases("ranker") == []


def test_materializations_are_found_by_a_data_version_prefix(store: MetadataStore) -> None:
    older = commit(store, "k1", "features", data_version="b3:abcd01")
    newer = commit(store, "k2", "features", data_version="b3:abcd01")
    commit(store, "k3", "features", data_version="b3:abff02")
    commit(store, "k4", "other", data_version="b3:abcd01")
    assert [m.id for m in store.materializations_with_prefix("features", "b3:abcd")] == [newer, older]
    assert {m.data_version for m in store.materializations_with_prefix("features", "b3:ab")} == {
        "b3:abcd01",
        "b3:abff02",
    }
    assert store.materializations_with_prefix("features", "b3:ffff") == []


def test_previous_targets_replays_sets_and_rollbacks() -> None:
    assert previous_targets([]) == []
    assert previous_targets([(1, None, "set"), (2, None, "promote"), (1, None, "rollback")]) == [(1, None)]
    assert previous_targets([(1, None, "set"), (None, "s", "set"), (3, None, "set")]) == [
        (1, None),
        (None, "s"),
        (3, None),
    ]


def test_a_model_result_is_registered_in_the_transaction_that_commits_it(store: MetadataStore) -> None:
    mat = make_mat("k1", "ranker")
    mat_id = store.commit_materialization(mat, make_step(mat), None, model_author="alice")
    [version] = store.model_versions("ranker")
    assert (version.version, version.mat_id, version.author, version.run_id) == (1, mat_id, "alice", "run-1")
    token = store.acquire_lease("k2", "run-1", "host:1", ttl_s=600)
    assert token is not None
    lost = make_mat("k2", "ranker", data_version="b3:other")
    with pytest.raises(LeaseLost):
        store.commit_materialization(lost, make_step(lost), ("k2", token + 1), model_author="alice")  # a stale token
    assert [v.version for v in store.model_versions("ranker")] == [1]  # nothing of the refused commit
