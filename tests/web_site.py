"""What the web tests share: a project's users, one per role, and a client that logs in or sends a token."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from fastapi.testclient import TestClient

from cairn.config import load_settings
from cairn.security import add_user
from cairn.storage.metadata import MetadataStore, open_metadata

# Who holds which role: alice and bob are approvers (alice trains the models), olga an operator, vic a viewer.
USERS = (("alice", "approver"), ("bob", "approver"), ("olga", "operator"), ("vic", "viewer"))


def add_users(root: Path) -> dict[str, str]:
    """Add the first admin and the `USERS` to the project in `root`; their tokens by name."""
    settings = load_settings(root)
    with open_metadata(settings.database, settings.root) as meta:
        tokens = {"admin": add_user(meta, "admin", "admin", None)}
        for name, role in USERS:
            tokens[name] = add_user(meta, name, role, "admin")
    return tokens


@dataclass
class Site:
    """A project with its users' tokens and a client of its web app."""

    root: Path
    tokens: dict[str, str]
    client: TestClient

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    def meta(self) -> MetadataStore:
        settings = load_settings(self.root)
        return open_metadata(settings.database, settings.root)

    def login(self, user: str) -> TestClient:
        """The client, its browser session now `user`'s, logged in through the form."""
        page = self.client.get("/login")
        nonce = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert nonce is not None
        done = self.client.post("/login", data={"token": self.tokens[user], "csrf": nonce.group(1)})
        assert done.status_code == 303 and done.headers["location"] == "/assets", done.text
        return self.client
