"""`cairn users` and `cairn audit` in a subprocess: tokens shown once, CAIRN_TOKEN, denials, the chain check."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ProjectFactory

PIPELINE = """
from cairn import asset

@asset
def numbers() -> list[int]:
    return [1, 2, 3]
"""


def cairn(project: Path, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "CAIRN_TOKEN"}
    env["COLUMNS"] = "200"
    if token is not None:
        env["CAIRN_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "cairn.cli.main", "-C", str(project), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def add(project: Path, name: str, role: str, token: str | None = None) -> str:
    done = cairn(project, "users", "add", name, "--role", role, "--json", token=token)
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["token"])


@pytest.fixture
def project(make_project: ProjectFactory) -> Path:
    return make_project(PIPELINE)


def test_the_first_admin_is_added_without_a_token_and_the_token_is_shown_once(project: Path) -> None:
    empty = cairn(project, "users", "list")
    assert empty.returncode == 0 and "no users are defined: add an admin with `cairn users add NAME --role admin`" in (
        empty.stdout
    )
    refused = cairn(project, "users", "add", "bob", "--role", "viewer")
    assert refused.returncode == 2 and "the first user must be an admin" in refused.stderr
    added = cairn(project, "users", "add", "root", "--role", "admin")
    assert added.returncode == 0, added.stderr
    token = added.stdout.split("token:")[1].split()[0]
    assert token.startswith("cairn_") and "will not be shown again" in added.stderr
    listed = json.loads(cairn(project, "users", "list", "--json").stdout)
    assert [(u["name"], u["role"], u["created_by"], u["disabled_at"]) for u in listed] == [
        ("root", "admin", "root", None)
    ]
    assert token not in json.dumps(listed)
    with sqlite3.connect(project / ".cairn" / "cairn.db") as db:
        stored = db.execute("SELECT token_hash FROM users").fetchall()
    assert stored[0][0].startswith("b3:") and token not in stored[0][0]


def test_cairn_token_decides_who_acts(project: Path) -> None:
    root = add(project, "root", "admin")
    denied = cairn(project, "users", "add", "vic", "--role", "viewer")
    assert denied.returncode == 2
    assert "adding a user needs the admin role: set CAIRN_TOKEN to your token" in denied.stderr
    vic = add(project, "vic", "viewer", token=root)
    whoami = cairn(project, "users", "whoami", token=vic)
    assert whoami.returncode == 0 and whoami.stdout.strip() == "vic (viewer)"
    as_viewer = cairn(project, "users", "add", "eve", "--role", "admin", token=vic)
    assert as_viewer.returncode == 2 and "user vic has role viewer; adding a user needs admin" in as_viewer.stderr
    unknown = cairn(project, "users", "whoami", token="cairn_not-a-real-token")
    assert unknown.returncode == 2 and "the token in CAIRN_TOKEN belongs to no user" in unknown.stderr
    garbage = cairn(project, "users", "whoami", token="hunter2")
    assert garbage.returncode == 2 and "CAIRN_TOKEN does not hold a cairn token" in garbage.stderr
    assert "Traceback" not in unknown.stderr + garbage.stderr + as_viewer.stderr


def test_role_disable_and_rotate(project: Path) -> None:
    root = add(project, "root", "admin")
    vic = add(project, "vic", "viewer", token=root)
    changed = cairn(project, "users", "role", "vic", "approver", token=root)
    assert changed.returncode == 0 and "user vic has role approver" in changed.stdout
    typo = cairn(project, "users", "role", "vic", "aprover", token=root)
    assert typo.returncode == 2 and "Did you mean 'approver'?" in typo.stderr
    rotated = cairn(project, "users", "rotate", "vic", "--json", token=vic)  # one's own token
    assert rotated.returncode == 0, rotated.stderr
    new = json.loads(rotated.stdout)["token"]
    assert cairn(project, "users", "whoami", token=vic).returncode == 2
    assert cairn(project, "users", "whoami", token=new).stdout.strip() == "vic (approver)"
    last = cairn(project, "users", "disable", "root", token=root)
    assert last.returncode == 2 and "would leave no enabled admin" in last.stderr
    disabled = cairn(project, "users", "disable", "vic", token=root)
    assert disabled.returncode == 0 and "their token no longer works" in disabled.stdout
    gone = cairn(project, "users", "whoami", token=new)
    assert gone.returncode == 2 and "user vic's, who is disabled" in gone.stderr
    table = cairn(project, "users", "list").stdout
    assert "vic   approver  disabled" in table and "root  admin     enabled" in table


def test_audit_lists_what_was_done_and_verify_finds_tampering(project: Path) -> None:
    root = add(project, "root", "admin")
    add(project, "vic", "viewer", token=root)
    cairn(project, "users", "role", "vic", "operator", token=root)
    cairn(project, "users", "rotate", "vic", token=root)
    listed = json.loads(cairn(project, "audit", "--json").stdout)
    assert [(e["seq"], e["actor"], e["action"], e["subject"]) for e in listed] == [
        (4, "root", "user.rotate", "vic"),
        (3, "root", "user.role", "vic"),
        (2, "root", "user.add", "vic"),
        (1, "root", "user.add", "root"),
    ]
    assert listed[1]["detail"] == {"from": "viewer", "to": "operator"}
    assert len(json.loads(cairn(project, "audit", "--json", "--limit", "2").stdout)) == 2
    text = cairn(project, "audit", "--action", "user.add").stdout
    assert "user.add" in text and "user.role" not in text and "role=viewer" in text
    intact = cairn(project, "audit", "verify")
    assert intact.returncode == 0 and intact.stdout.startswith("chain intact: 4 rows, head b3:")

    database = project / ".cairn" / "cairn.db"
    with sqlite3.connect(database) as db:
        db.execute('UPDATE audit SET detail = \'{"from":"viewer","to":"viewer"}\' WHERE seq = 3')
    edited = cairn(project, "audit", "verify")
    assert edited.returncode == 1
    assert "chain broken at row 3 (edited): row 3 (user.role vic by root) does not match its hash" in edited.stdout
    report = json.loads(cairn(project, "audit", "verify", "--json").stdout)
    assert report["intact"] is False and report["break"]["seq"] == 3 and report["rows"] == 4

    with sqlite3.connect(database) as db:
        db.execute("DELETE FROM audit WHERE seq = 2")
    deleted = cairn(project, "audit", "verify")
    assert deleted.returncode == 1 and "chain broken at row 2 (missing): row 2 is missing" in deleted.stdout


def test_reordered_rows_are_reported(project: Path) -> None:
    root = add(project, "root", "admin")
    add(project, "vic", "viewer", token=root)
    add(project, "ops", "operator", token=root)
    with sqlite3.connect(project / ".cairn" / "cairn.db") as db:
        db.execute("UPDATE audit SET seq = -1 WHERE seq = 2")
        db.execute("UPDATE audit SET seq = 2 WHERE seq = 3")
        db.execute("UPDATE audit SET seq = 3 WHERE seq = -1")
    done = cairn(project, "audit", "verify")
    assert done.returncode == 1 and "chain broken at row 2 (out_of_order): row 2 does not follow row 1" in done.stdout
