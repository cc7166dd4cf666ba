"""`cairn show` lists the metadata an asset function added, never cairn's own ``cairn.*`` keys (CLI in a subprocess)."""

from __future__ import annotations

import json

import cairn
from tests.conftest import ProjectFactory, cli

PIPELINE = """
from cairn import Context, asset

@asset(env=["pytest"])
def table(ctx: Context) -> dict:
    ctx.add_metadata(rows=3)
    return {"x": [1, 2, 3]}
"""


def test_show_hides_internal_metadata_keys_and_keeps_the_users(make_project: ProjectFactory) -> None:
    root = make_project(PIPELINE)
    run = cairn.materialize(project=root)
    assert run.ok
    out = cli("-C", str(root), "show", run.run_id, "--json")
    assert out.returncode == 0, out.stderr
    (step,) = json.loads(out.stdout)["steps"]
    assert step["metadata"] == {"rows": 3}
    assert step["timings"]  # what cairn records for itself stays available under its own key
    text = cli("-C", str(root), "show", run.run_id).stdout
    assert "cairn.env" not in text and "cairn." not in text
