"""Equal values serialized in separate processes give the same data version (early cutoff across runs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cairn.io
from cairn.io import dump
from cairn.storage.memory import MemoryArtifactStore

SRC = Path(cairn.io.__file__).resolve().parents[2]

# Builds the same values each time; dict insertion order differs with the argument to show it does not count.
SCRIPT = """
import json, sys
import numpy as np, pandas as pd, polars as pl, pyarrow as pa
from cairn.io import dump
from cairn.storage.memory import MemoryArtifactStore

def values(reverse):
    rng = np.random.default_rng(7)
    frame = pd.DataFrame({"id": np.arange(10_000), "x": rng.normal(size=10_000),
                          "cat": rng.choice(["a", "b", "c"], 10_000),
                          "ts": pd.date_range("2026-06-01", periods=10_000, freq="min", tz="UTC")})
    metrics = {"auc": 0.91, "rows": 10_000, "segments": {"us": 1, "eu": 2}}
    if reverse:
        metrics = dict(reversed(list(metrics.items())))
    return {"pandas": frame, "polars": pl.from_pandas(frame), "arrow": pa.Table.from_pandas(frame),
            "numpy": rng.normal(size=(50, 4)), "json": metrics}

store = MemoryArtifactStore()
digests = {name: dump(value, store).data_version for name, value in values(sys.argv[1] == "1").items()}
print(json.dumps(digests))
"""


def digests_in_subprocess(reverse: bool, hash_seed: str) -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONHASHSEED": hash_seed,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, "1" if reverse else "0"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, str] = json.loads(done.stdout)
    return result


def test_equal_values_give_the_same_digest_in_separate_processes() -> None:
    first = digests_in_subprocess(reverse=False, hash_seed="1")
    second = digests_in_subprocess(reverse=True, hash_seed="2")
    assert set(first) == {"pandas", "polars", "arrow", "numpy", "json"}
    assert first == second
    assert (
        dump({"segments": {"eu": 2, "us": 1}, "rows": 10_000, "auc": 0.91}, MemoryArtifactStore()).data_version
        == (first["json"])
    )
