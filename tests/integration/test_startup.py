"""The start-up budget (DESIGN §5): `import cairn` loads the standard library and blake3 only; the CLI adds
Typer/Click and Rich; `--help`, `plan` and a no-change rerun load no data libraries."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ProjectFactory

HEAVY = ("pyarrow", "fsspec", "pandas", "polars", "numpy", "dask", "ray", "psycopg", "fastapi", "sqlalchemy")

PROBE = """
import json, sys
before = set(sys.modules)
{code}
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def loaded_by(code: str, cwd: Path | None = None) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(code=code)], capture_output=True, text=True, check=True, cwd=cwd
    )
    return {name.split(".")[0] for name in json.loads(out.stdout.strip().splitlines()[-1])}


def third_party(modules: set[str]) -> set[str]:
    stdlib = set(sys.stdlib_module_names) | {"_distutils_hack", "__future__"}
    return {m for m in modules if m not in stdlib and not m.startswith("_")} - {"cairn"}


def test_import_cairn_loads_only_the_standard_library_and_blake3() -> None:
    assert third_party(loaded_by("import cairn")) <= {"blake3"}


def test_cli_help_adds_only_typer_click_and_rich() -> None:
    code = """
import sys
sys.argv = ["cairn", "--help"]
from cairn.cli.main import main
try:
    main()
except SystemExit:
    pass
"""
    extra = third_party(loaded_by(code))
    assert extra <= {
        "blake3",
        "typer",
        "click",
        "rich",
        "shellingham",
        "typing_extensions",
        "markdown_it",
        "mdurl",
        "pygments",
        "annotated_doc",
    }, extra
    assert not extra & set(HEAVY)


TWO_ASSETS = """
from cairn import asset

@asset
def a() -> int:
    return 1

@asset
def b(a: int) -> int:
    return a + 1
"""


def test_plan_and_a_cached_rerun_load_no_data_library(make_project: ProjectFactory) -> None:
    root = make_project(TWO_ASSETS)
    for args in (["run"], ["plan"], ["run"], ["status"], ["why", "b"]):
        code = f"""
import sys
sys.argv = ["cairn", "-C", {str(root)!r}, *{args!r}]
from cairn.cli.main import main
try:
    main()
except SystemExit:
    pass
"""
        if args == ["run"] and not (root / ".cairn").exists():
            subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
            continue
        heavy = loaded_by(code) & set(HEAVY)
        assert not heavy, (args, heavy)
