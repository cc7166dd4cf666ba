"""Captures the environment of a run once, cheaply: interpreter, OS, architecture, cairn version, host."""

from __future__ import annotations

import platform
import socket
import sys
from typing import Any


def capture() -> dict[str, Any]:
    """The run's environment as a JSON-able dict."""
    from cairn.version import __version__

    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "os": f"{platform.system()} {platform.release()}",
        "arch": platform.machine(),
        "cairn": __version__,
        "host": socket.gethostname(),
        "executable": sys.executable,
    }
