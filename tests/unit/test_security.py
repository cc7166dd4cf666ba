"""Roles, tokens, the audit row hash, and the access rules over an in-memory store."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cairn.errors import AccessDenied, UsageError
from cairn.hashing import hash_struct
from cairn.security import (
    Role,
    add_user,
    audit,
    current_user,
    disable_user,
    hash_token,
    new_token,
    require,
    rotate_token,
    set_role,
)
from cairn.storage import identity
from cairn.storage.audit import canonical_detail, entry_hash
from cairn.storage.metadata import MetadataStore, open_metadata

ROW = (7, 1780000000.25, "alice", "model.promote", "recsys@3", '{"alias":"champion"}', "b3:prev")


@pytest.fixture
def meta() -> Iterator[MetadataStore]:
    with open_metadata("sqlite:///:memory:", ".") as store:
        yield store


def env(token: str) -> dict[str, str]:
    return {"CAIRN_TOKEN": token}


# -- roles and tokens ------------------------------------------------------------------------------


def test_roles_order_by_what_they_allow_not_alphabetically() -> None:
    assert Role.VIEWER < Role.OPERATOR < Role.APPROVER < Role.ADMIN
    assert sorted([Role.ADMIN, Role.VIEWER, Role.APPROVER, Role.OPERATOR]) == list(Role)
    assert Role.ADMIN.allows(Role.VIEWER) and Role.APPROVER.allows(Role.APPROVER)
    assert not Role.OPERATOR.allows(Role.APPROVER)
    assert Role.ADMIN >= Role.ADMIN and not Role.VIEWER > Role.VIEWER
    assert Role.ADMIN.value == "admin" == identity.ADMIN


def test_a_role_is_parsed_from_what_a_user_types_and_an_unknown_one_names_the_roles() -> None:
    assert Role.parse(" Approver ") is Role.APPROVER and Role.parse(Role.VIEWER) is Role.VIEWER
    with pytest.raises(
        UsageError, match=r"role 'aprover' does not exist\. Did you mean 'approver'\?.*viewer, operator"
    ):
        Role.parse("aprover")


def test_tokens_are_random_prefixed_and_hash_to_a_tagged_digest() -> None:
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100 and all(t.startswith("cairn_") and len(t) == 49 for t in tokens)
    token = next(iter(tokens))
    assert hash_token(token) == hash_token(token) and hash_token(token).startswith("b3:")
    assert hash_token(token) != hash_token(token + "x") and token not in hash_token(token)


# -- the audit row hash ----------------------------------------------------------------------------


def test_the_row_hash_is_pinned() -> None:
    """A change of the encoding would break every stored chain: it needs a new tag, not a new value."""
    assert entry_hash(*ROW) == "b3:89d1b7bb5045467116ad5e6504f9c8667537d3fedeb360a2013fc5071cb76dea"
    assert entry_hash(*ROW) == hash_struct(["cairn.audit/1", *ROW])


@pytest.mark.parametrize("field", range(len(ROW)))
def test_every_field_enters_the_row_hash(field: int) -> None:
    changed = list(ROW)
    value = changed[field]
    changed[field] = value + 1 if isinstance(value, int | float) else f"{value}x"
    assert entry_hash(*changed) != entry_hash(*ROW)  # type: ignore[arg-type]


def test_fields_cannot_trade_characters_without_changing_the_hash() -> None:
    assert entry_hash(1, 0.0, "ab", "c", "s", "{}", "") != entry_hash(1, 0.0, "a", "bc", "s", "{}", "")


@given(st.dictionaries(st.text(), st.one_of(st.integers(), st.text(), st.booleans(), st.none())))
def test_the_stored_detail_is_canonical_whatever_the_key_order(detail: dict[str, object]) -> None:
    reordered = dict(reversed(list(detail.items())))
    assert canonical_detail(detail) == canonical_detail(reordered)
    assert " " not in canonical_detail({"a": [1, 2]})


# -- access rules ----------------------------------------------------------------------------------


def test_without_users_every_role_check_says_to_add_an_admin(meta: MetadataStore) -> None:
    with pytest.raises(
        AccessDenied, match=r"no users are defined: add an admin with `cairn users add NAME --role admin`"
    ):
        require(meta, Role.OPERATOR, "run", {})
    assert current_user(meta, {}) is None and current_user(meta, env("  ")) is None


def test_the_first_user_needs_no_token_but_must_be_an_admin(meta: MetadataStore) -> None:
    with pytest.raises(UsageError, match="the first user must be an admin"):
        add_user(meta, "bob", "viewer", None)
    token = add_user(meta, "root", "admin", None)
    user = current_user(meta, env(token))
    assert user is not None and (user.name, user.role, user.created_by) == ("root", "admin", "root")
    with pytest.raises(AccessDenied, match="adding a user needs the admin role: set CAIRN_TOKEN to your token"):
        add_user(meta, "mallory", "admin", None)


def test_require_names_what_is_missing(meta: MetadataStore) -> None:
    root = add_user(meta, "root", "admin", None)
    viewer = add_user(meta, "vic", Role.VIEWER, "root")
    with pytest.raises(AccessDenied, match="promote needs the approver role: set CAIRN_TOKEN to your token"):
        require(meta, "approver", "promote", {})
    with pytest.raises(AccessDenied, match=r"^user vic has role viewer; run needs operator$"):
        require(meta, Role.OPERATOR, "run", env(viewer))
    assert require(meta, Role.VIEWER, "read", env(viewer)).name == "vic"
    assert require(meta, Role.APPROVER, "promote", env(root)).name == "root"  # admin may do all
    with pytest.raises(AccessDenied, match="does not hold a cairn token"):
        require(meta, Role.VIEWER, "read", env("hunter2"))
    with pytest.raises(AccessDenied, match="belongs to no user"):
        require(meta, Role.VIEWER, "read", env(new_token()))


def test_only_admins_change_users_and_a_disabled_users_token_stops_working(meta: MetadataStore) -> None:
    add_user(meta, "root", "admin", None)
    op = add_user(meta, "op", "operator", "root")
    operator = current_user(meta, env(op))
    with pytest.raises(AccessDenied, match="user op has role operator; adding a user needs admin"):
        add_user(meta, "eve", "viewer", operator)
    with pytest.raises(AccessDenied, match="changing a user's role needs admin"):
        set_role(meta, "op", "admin", operator)
    with pytest.raises(AccessDenied, match="rotating another user's token needs admin"):
        rotate_token(meta, "root", operator)
    assert set_role(meta, "op", "approver", "root").role == "approver"
    assert disable_user(meta, "op", "root").disabled_at is not None
    with pytest.raises(AccessDenied, match="user op's, who is disabled"):
        current_user(meta, env(op))
    with pytest.raises(AccessDenied, match="the acting user 'op' is disabled"):
        rotate_token(meta, "op", "op")


def test_a_user_rotates_their_own_token_and_the_old_one_stops_working(meta: MetadataStore) -> None:
    add_user(meta, "root", "admin", None)
    old = add_user(meta, "vic", "viewer", "root")
    new = rotate_token(meta, "vic", current_user(meta, env(old)))
    assert new != old and require(meta, Role.VIEWER, "read", env(new)).name == "vic"
    with pytest.raises(AccessDenied, match="belongs to no user"):
        current_user(meta, env(old))


def test_a_user_name_is_validated(meta: MetadataStore) -> None:
    with pytest.raises(UsageError, match="user name '../x' is not allowed"):
        add_user(meta, "../x", "admin", None)


def test_user_changes_and_explicit_actions_are_in_the_chained_audit_log(meta: MetadataStore) -> None:
    token = add_user(meta, "root", "admin", None)
    add_user(meta, "vic", "viewer", "root")
    set_role(meta, "vic", "operator", "root")
    disable_user(meta, "vic", "root")
    user = current_user(meta, env(token))
    assert user is not None
    entry = audit(meta, user, "model.load", "recsys@champion", {"version": 3})
    assert (entry.actor, entry.seq) == ("root", 5)
    actions = [e.action for e in reversed(meta.audit_entries())]
    assert actions == ["user.add", "user.add", "user.role", "user.disable", "model.load"]
    assert meta.verify_audit() is None
