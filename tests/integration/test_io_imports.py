"""The start-up budget: importing the serializers and artifact stores loads no heavy library."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cairn.io

SRC = Path(cairn.io.__file__).resolve().parents[2]
HEAVY = ("pyarrow", "numpy", "pandas", "polars", "fsspec", "joblib", "skops")


def test_importing_io_and_artifact_stores_loads_no_heavy_library() -> None:
    code = (
        "import cairn.io, cairn.storage.artifacts, cairn.storage.memory, json, sys; "
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == []
