"""What one web app holds between requests: the project's settings, a secret for CSRF tokens, and the runs it
started in background threads."""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field

from cairn.config import Settings


@dataclass
class AppState:
    """The project the app serves and its background runs (run id → thread)."""

    settings: Settings
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    runs: dict[str, threading.Thread] = field(default_factory=dict)
