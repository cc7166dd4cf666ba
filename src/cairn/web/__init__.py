"""The web UI and HTTP API (FastAPI, Jinja2 templates, static files shipped in the package): `create_app`.

Layer: an interface beside `cairn.cli`; nothing else in cairn imports it, and `cairn ui` imports it only when run,
so that `import cairn` and the CLI never load FastAPI. See docs/ui.md.
"""

from __future__ import annotations

from cairn.web.app import create_app

__all__ = ["create_app"]
