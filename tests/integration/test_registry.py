"""The model registry: versions registered by training, approval-gated promotion, rollback, aliases of any asset,
verified loading, and the audit rows of each action (real SQLite, real files, the CLI in a subprocess)."""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import cairn
from cairn import registry
from cairn.config import load_settings
from cairn.errors import AccessDenied, CorruptObject, UsageError
from cairn.registry import Refused
from cairn.security import add_user
from cairn.storage.artifacts import LocalArtifactStore
from cairn.storage.metadata import MetadataStore, open_metadata
from tests.conftest import ProjectFactory, cli

# A model whose quality is a param: its gate passes at 0.8 and above. Each quality gives other bytes, so each
# run with another quality registers a new version.
PIPELINE = """
from cairn import Context, asset, gate

@asset
def events() -> list:
    return [1, 2, 3]

@asset(params={"quality": 0.9}, kind="model")
def ranker(ctx: Context, events: list) -> dict:
    ctx.log_metric("auc", ctx.params["quality"])
    ctx.add_metadata(model_card={"owner": "ranking-team", "intended_use": "home feed"})
    return {"weights": [ctx.params["quality"], len(events)]}

@gate("ranker")
def auc_floor(model, ctx) -> bool:
    return ctx.metrics["auc"] >= 0.8

@gate("ranker", blocking=False)
def size_note(model, ctx) -> bool:
    return False
"""


@dataclass
class Team:
    """A project with users: an admin, two approvers (alice trains, bob reviews) and an operator."""

    root: Path
    tokens: dict[str, str]

    def env(self, user: str) -> dict[str, str]:
        return {"CAIRN_TOKEN": self.tokens[user]}

    def meta(self) -> MetadataStore:
        settings = load_settings(self.root)
        return open_metadata(settings.database, settings.root)

    def train(self, monkeypatch: pytest.MonkeyPatch, quality: float, user: str = "alice", force: bool = False) -> None:
        monkeypatch.setenv("CAIRN_TOKEN", self.tokens[user])
        result = cairn.materialize(["ranker"], project=self.root, params={"ranker": {"quality": quality}}, force=force)
        monkeypatch.delenv("CAIRN_TOKEN")
        assert result.status == "succeeded", result


@pytest.fixture(autouse=True)
def no_ambient_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CAIRN_TOKEN", raising=False)


@pytest.fixture
def team(make_project: ProjectFactory) -> Iterator[Team]:
    root = make_project(PIPELINE)
    settings = load_settings(root)
    with open_metadata(settings.database, settings.root) as meta:
        tokens = {"admin": add_user(meta, "admin", "admin", None)}
        for name, role in (("alice", "approver"), ("bob", "approver"), ("olga", "operator"), ("vic", "viewer")):
            tokens[name] = add_user(meta, name, role, "admin")
    yield Team(root, tokens)


def test_training_registers_a_version_per_distinct_model_with_its_author_and_never_promotes(
    team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    team.train(monkeypatch, 0.9)
    team.train(monkeypatch, 0.9, force=True)  # the same bytes again: the same version
    team.train(monkeypatch, 0.95, user="bob")
    with team.meta() as meta:
        versions = registry.models(meta)
        assert [(v.name, v.version, v.author) for v in versions] == [("ranker", 1, "alice"), ("ranker", 2, "bob")]
        first = versions[0]
        assert first.mat is not None and first.mat.metrics == {"auc": 0.9}
        assert first.model_card == {"owner": "ranking-team", "intended_use": "home feed"}
        assert [(g.gate, g.passed, g.blocking) for g in first.gates] == [
            ("auc_floor", True, True),
            ("size_note", False, False),
        ]
        assert first.mat.inputs[0].asset == "events"
        assert meta.aliases() == []  # training never promotes
        run = meta.get_run(first.record.run_id)
        assert run is not None and run.args["actor"] == "alice"


def test_without_a_token_the_author_is_the_operating_system_user(make_project: ProjectFactory) -> None:
    root = make_project(PIPELINE)
    assert cairn.materialize(["ranker"], project=root).status == "succeeded"
    settings = load_settings(root)
    with open_metadata(settings.database, settings.root) as meta:
        assert registry.version(meta, "ranker").author == getpass.getuser()


def test_self_approval_is_refused_and_audited(team: Team, monkeypatch: pytest.MonkeyPatch) -> None:
    team.train(monkeypatch, 0.9)
    with team.meta() as meta:
        with pytest.raises(Refused, match="self-approval is not allowed: alice is the author of model ranker"):
            registry.approve(meta, "ranker", 1, "looks good", team.env("alice"))
        assert registry.version(meta, "ranker", 1).approvals == ()
        entry = meta.audit_entries(1)[0]
        assert (entry.actor, entry.action, entry.subject) == ("alice", "model.approve_refused", "ranker@1")


def test_a_failed_blocking_gate_refuses_promotion_even_with_an_approval(
    team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    team.train(monkeypatch, 0.5)
    with team.meta() as meta:
        approval = registry.approve(meta, "ranker", 1, "reviewed the card", team.env("bob"))
        assert approval.new and approval.problems == ("blocking gate 'auc_floor' failed",)
        with pytest.raises(Refused, match=r"cannot be promoted to 'champion': blocking gate 'auc_floor' failed"):
            registry.promote(meta, "ranker", 1, "champion", team.env("bob"))
        assert meta.alias("champion", "ranker") is None
        assert meta.audit_entries(1)[0].action == "model.promote_refused"


def test_promotion_needs_an_approval_by_someone_other_than_the_author(
    team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    team.train(monkeypatch, 0.9)
    with team.meta() as meta:
        with pytest.raises(Refused, match=r"no approval by an approver other than its author alice.*models approve"):
            registry.promote(meta, "ranker", 1, "champion", team.env("alice"))
        registry.approve(meta, "ranker", 1, "metrics and card reviewed", team.env("bob"))
        change = registry.promote(meta, "ranker", 1, "champion", team.env("alice"))
        assert (change.version, change.moved, change.before, change.actor) == (1, True, None, "alice")
        assert meta.alias_target("champion", "ranker") == registry.version(meta, "ranker", 1).mat
        again = registry.promote(meta, "ranker", 1, "champion", team.env("alice"))
        assert not again.moved
        actions = [(e.actor, e.action, e.subject) for e in reversed(meta.audit_entries(3))]
        assert actions[-2:] == [("bob", "model.approve", "ranker@1"), ("alice", "model.promote", "ranker@1")]
        promoted = meta.audit_entries(1)[0].detail
        assert promoted["approved_by"] == ["bob"] and promoted["to"] == {"mat_id": change.mat_id, "version": 1}


def test_roles_are_checked_an_operator_cannot_approve_or_promote(team: Team, monkeypatch: pytest.MonkeyPatch) -> None:
    team.train(monkeypatch, 0.9)
    with team.meta() as meta:
        with pytest.raises(AccessDenied, match="user olga has role operator; approving model ranker version 1 needs"):
            registry.approve(meta, "ranker", 1, "ok", team.env("olga"))
        with pytest.raises(AccessDenied, match="needs the approver role: set CAIRN_TOKEN"):
            registry.promote(meta, "ranker", 1, "champion", {})


def test_rollback_restores_the_previous_version_and_loading_follows_the_alias(
    team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    team.train(monkeypatch, 0.9)
    team.train(monkeypatch, 0.95)
    with team.meta() as meta:
        for number in (1, 2):
            registry.approve(meta, "ranker", number, "reviewed", team.env("bob"))
            registry.promote(meta, "ranker", number, "champion", team.env("bob"))
    assert cairn.models.load("ranker", project=team.root) == {"weights": [0.95, 3]}
    assert cairn.load("ranker", project=team.root, alias="champion") == {"weights": [0.95, 3]}
    assert cairn.models.load("ranker", version=1, project=team.root) == {"weights": [0.9, 3]}
    with team.meta() as meta:
        change = registry.rollback(meta, "ranker", "champion", team.env("bob"))
        assert (change.version, change.before) == (1, {"mat_id": change.before["mat_id"], "version": 2})
        assert cairn.models.load("ranker", alias="champion", project=team.root) == {"weights": [0.9, 3]}
        assert cairn.load("ranker", project=team.root, alias="champion") == {"weights": [0.9, 3]}
        with pytest.raises(Refused, match="alias 'champion' of ranker has nothing to roll back to"):
            registry.rollback(meta, "ranker", "champion", team.env("bob"))
        entry = next(e for e in meta.audit_entries(5) if e.action == "model.rollback")
        assert entry.detail["from"]["version"] == 2 and entry.detail["to"]["version"] == 1
        history = registry.alias_history(meta, "champion", "ranker")
        assert [m.action for m in history] == ["promote", "promote", "rollback"]


def test_a_tampered_model_file_is_refused_on_load_naming_the_model_and_what_to_do(
    team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    team.train(monkeypatch, 0.9)
    with team.meta() as meta:
        registry.approve(meta, "ranker", 1, "reviewed", team.env("bob"))
        registry.promote(meta, "ranker", 1, "champion", team.env("bob"))
        digest = registry.version(meta, "ranker", 1).record.data_version
    path = Path(LocalArtifactStore(team.root / ".cairn" / "artifacts").object_path(digest))
    path.chmod(0o644)
    path.write_bytes(path.read_bytes().replace(b"0.9", b"9.9"))
    pattern = r"model 'ranker' version 1 \(alias 'champion'\) was not loaded.*cairn verify.*cairn run ranker"
    with pytest.raises(CorruptObject, match=pattern):
        cairn.models.load("ranker", project=team.root)
    with pytest.raises(CorruptObject, match=r"model 'ranker' version 1 was not loaded"):
        cairn.load("ranker", project=team.root, alias="champion")


def test_with_no_users_defined_approve_and_promote_say_how_to_add_one(
    make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project(PIPELINE)
    assert cairn.materialize(["ranker"], project=root).status == "succeeded"
    settings = load_settings(root)
    with open_metadata(settings.database, settings.root) as meta:
        with pytest.raises(AccessDenied, match=r"no users are defined: add an admin with `cairn users add NAME"):
            registry.approve(meta, "ranker", 1, "ok", {})
        with pytest.raises(AccessDenied, match=r"no users are defined: add an admin with `cairn users add NAME"):
            registry.promote(meta, "ranker", 1, "champion", {})


def test_aliases_of_data_assets_set_roll_back_and_keep_their_history(
    team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAIRN_TOKEN", team.tokens["olga"])
    cairn.materialize(["events"], project=team.root)
    with team.meta() as meta:
        first = meta.latest_materialization("events")
        assert first is not None
        meta.create_snapshot("launch", "events", [("events", "", first.id)])
        ops = team.env("olga")
        with pytest.raises(AccessDenied, match="user vic has role viewer"):
            registry.set_alias(meta, "production", "events", first.id, "first release", team.env("vic"))
        target = registry.resolve_target(meta, "events", first.data_version[3:11])
        assert target == first.id and registry.resolve_target(meta, "events", "snapshot:launch") == "launch"
        registry.set_alias(meta, "production", "events", target, "first release", ops)
        change = registry.set_alias(meta, "production", "events", "launch", "pin the launch snapshot", ops)
        assert change.snapshot == "launch" and change.before == {"mat_id": first.id}
        assert cairn.load("events", project=team.root, alias="production") == [1, 2, 3]
        back = registry.rollback_alias(meta, "production", "events", "undo", ops)
        assert (back.mat_id, back.snapshot) == (first.id, None)
        moves = registry.alias_history(meta, "production")
        assert [(m.action, m.actor, m.reason) for m in moves] == [
            ("set", "olga", "first release"),
            ("set", "olga", "pin the launch snapshot"),
            ("rollback", "olga", "undo"),
        ]
        assert [e.action for e in reversed(meta.audit_entries(3))] == ["alias.set", "alias.set", "alias.rollback"]
        with pytest.raises(UsageError, match="'events' has no alias 'staging'"):
            cairn.load("events", project=team.root, alias="staging")
        with pytest.raises(UsageError, match=f"materialization {first.id} is one of 'events', not of 'labels'"):
            registry.set_alias(meta, "production", "labels", first.id, "", ops)


def test_a_model_alias_moves_only_by_promotion(team: Team, monkeypatch: pytest.MonkeyPatch) -> None:
    team.train(monkeypatch, 0.9)
    with team.meta() as meta:
        mat_id = registry.version(meta, "ranker", 1).record.mat_id
        with pytest.raises(AccessDenied, match="user olga has role operator; promoting model ranker version 1"):
            registry.set_alias(meta, "champion", "ranker", mat_id, "", team.env("olga"))
        with pytest.raises(Refused, match="no approval by an approver other than its author"):
            registry.set_alias(meta, "champion", "ranker", mat_id, "", team.env("bob"))


def test_sklearn_models_are_stored_with_skops_deterministically_and_load_back(
    make_project: ProjectFactory,
) -> None:
    pytest.importorskip("skops")
    root = make_project(
        """
        from cairn import asset

        @asset(kind="model")
        def forest():
            import numpy as np
            from sklearn.ensemble import RandomForestClassifier

            x = np.random.RandomState(0).rand(60, 3)
            return RandomForestClassifier(n_estimators=3, random_state=0).fit(x, x[:, 0] > 0.5)
        """
    )
    assert cairn.materialize(["forest"], project=root).status == "succeeded"
    assert cairn.materialize(["forest"], project=root, force=True).status == "succeeded"
    settings = load_settings(root)
    with open_metadata(settings.database, settings.root) as meta:
        versions = registry.models(meta, "forest")
        assert len(versions) == 1 and versions[0].mat is not None and versions[0].mat.format == "skops"
        assert len(meta.materializations("forest")) == 2  # the forced rerun wrote the same bytes
    model = cairn.models.load("forest", version=1, project=root)
    assert type(model).__name__ == "RandomForestClassifier" and model.predict([[0.9, 0.1, 0.1]]).tolist() == [True]


def test_cli_models_and_alias_commands(team: Team, monkeypatch: pytest.MonkeyPatch) -> None:
    team.train(monkeypatch, 0.5)
    team.train(monkeypatch, 0.9)
    root = str(team.root)
    listed = cli("models", "list", "-C", root, "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["version"], r["gates"]["blocking_failed"], r["promotable"]) for r in rows] == [
        (1, ["auc_floor"], False),
        (2, [], False),
    ]
    monkeypatch.setenv("CAIRN_TOKEN", team.tokens["alice"])
    own = cli("models", "approve", "ranker", "2", "--reason", "mine", "-C", root)
    assert own.returncode == 1 and "self-approval is not allowed" in own.stderr
    assert cli("models", "approve", "ranker", "two", "--reason", "x", "-C", root).returncode == 2
    monkeypatch.setenv("CAIRN_TOKEN", team.tokens["bob"])
    assert cli("models", "approve", "ranker", "1", "--reason", "card ok", "-C", root).returncode == 0
    refused = cli("models", "promote", "ranker", "1", "--alias", "champion", "-C", root)
    assert refused.returncode == 1 and "blocking gate 'auc_floor' failed" in refused.stderr
    assert cli("models", "approve", "ranker", "2", "--reason", "better auc", "-C", root).returncode == 0
    promoted = cli("models", "promote", "ranker", "2", "--alias", "champion", "-C", root)
    assert promoted.returncode == 0 and "version 2" in promoted.stdout, promoted.stderr
    shown = json.loads(cli("models", "show", "ranker@2", "-C", root, "--json").stdout)
    assert shown["aliases"] == ["champion"] and shown["approvals"][0]["approver"] == "bob"
    assert shown["model_card"]["owner"] == "ranking-team" and shown["materialization"]["metrics"] == {"auc": 0.9}
    text = cli("models", "show", "ranker", "-C", root)
    assert text.returncode == 0 and "auc_floor" in text.stdout and "champion" in text.stdout
    nothing = cli("models", "rollback", "ranker", "--alias", "champion", "-C", root)
    assert nothing.returncode == 1 and "nothing to roll back to" in nothing.stderr
    monkeypatch.setenv("CAIRN_TOKEN", team.tokens["olga"])
    assert cli("run", "events", "-C", root).returncode == 0
    with team.meta() as meta:
        events = meta.latest_materialization("events")
        assert events is not None
    moved = cli("alias", "set", "production", f"events@{events.data_version[3:12]}", "--reason", "go", "-C", root)
    assert moved.returncode == 0, moved.stderr
    assert cli("alias", "set", "production", "events", "-C", root).returncode == 2
    aliases = json.loads(cli("alias", "list", "-C", root, "--json").stdout)
    assert {(a["alias"], a["asset"], a["version"]) for a in aliases} == {
        ("champion", "ranker", 2),
        ("production", "events", None),
    }
    history = json.loads(cli("alias", "history", "champion", "ranker", "-C", root, "--json").stdout)
    assert [(h["action"], h["version"], h["actor"]) for h in history] == [("promote", 2, "bob")]
    back = cli("alias", "rollback", "production", "events", "-C", root)
    assert back.returncode == 1 and "nothing to roll back to" in back.stderr
