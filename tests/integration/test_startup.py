"""The start-up budget (DESIGN §5): `import cairn` loads the standard library and blake3 only; the CLI adds
Typer/Click and Rich; `--help` imports no command module (it lists them from a table), `plan` and a no-change
rerun load no data libraries."""

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


def modules_loaded_by(code: str, cwd: Path | None = None) -> set[str]:
    """The full names of the modules that running `code` in a fresh interpreter imports."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(code=code)], capture_output=True, text=True, check=True, cwd=cwd
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def loaded_by(code: str, cwd: Path | None = None) -> set[str]:
    return {name.split(".")[0] for name in modules_loaded_by(code, cwd)}


def third_party(modules: set[str]) -> set[str]:
    stdlib = set(sys.stdlib_module_names) | {"_distutils_hack", "__future__"}
    return {m for m in modules if m not in stdlib and not m.startswith("_")} - {"cairn"}


def test_import_cairn_loads_only_the_standard_library_and_blake3() -> None:
    assert third_party(loaded_by("import cairn")) <= {"blake3"}


HELP = """
import sys
sys.argv = ["cairn", "--help"]
from cairn.cli.main import main
try:
    main()
except SystemExit:
    pass
"""


def test_cli_help_adds_only_typer_click_and_rich() -> None:
    extra = third_party(loaded_by(HELP))
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


def test_cli_help_imports_no_command_module_nor_what_the_commands_need() -> None:
    """`cairn --help` lists the commands from cairn.cli.main's table: no command module, no Rich console, no
    SQLite, no engine, stores, config or project loading."""
    from cairn.cli.main import COMMANDS

    loaded = modules_loaded_by(HELP)
    command_modules = {f"cairn.cli.{module}" for _, module, _ in COMMANDS} | {"cairn.cli.common"}
    assert not loaded & command_modules, sorted(loaded & command_modules)
    needed_by_commands = (
        "rich",
        "sqlite3",
        "_sqlite3",
        "cairn.engine",
        "cairn.storage",
        "cairn.config",
        "cairn.project",
        "cairn.core",
        "cairn.registry",
        "cairn.security",
        "blake3",
        "tomllib",
    )
    imported = sorted(
        m for m in loaded if m in needed_by_commands or m.startswith(tuple(f"{n}." for n in needed_by_commands))
    )
    assert not imported, imported


def test_the_command_table_matches_what_the_command_modules_register() -> None:
    """Each row's module registers that command, with that first sentence of help; no command is left out."""
    from typer._click.utils import make_default_short_help

    from cairn.cli.main import COMMANDS, registered

    found = {}
    for module in dict.fromkeys(module for _, module, _ in COMMANDS):
        for name, command in registered(module).items():
            found[name] = (module, make_default_short_help(command.help or "", 10**6))
    assert {name: (module, summary) for name, module, summary in COMMANDS} == found


def test_cli_help_lists_every_command_and_a_command_still_shows_its_own_help() -> None:
    from cairn.cli.main import COMMANDS

    listed = subprocess.run(
        [sys.executable, "-m", "cairn.cli.main", "--help"], capture_output=True, text=True, check=True
    ).stdout
    rows = [line.split()[0] for line in listed.split("Commands:", 1)[1].splitlines() if line[:3].strip()]
    assert rows == [name for name, _, _ in COMMANDS]
    run_help = subprocess.run(
        [sys.executable, "-m", "cairn.cli.main", "run", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "--sweep" in run_help and " run [OPTIONS]" in run_help, run_help
    group_help = subprocess.run(
        [sys.executable, "-m", "cairn.cli.main", "models", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "promote" in group_help, group_help


def test_a_mistyped_command_is_told_the_nearest_names() -> None:
    done = subprocess.run([sys.executable, "-m", "cairn.cli.main", "rn"], capture_output=True, text=True)
    assert done.returncode == 2
    assert "No such command 'rn'. Did you mean 'run', 'runs'?" in done.stderr, done.stderr


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


def command_code(root: Path, command: str) -> str:
    """Code that runs one cairn command on the project at `root` and fails if the command does."""
    return f"""
import sys
sys.argv = ["cairn", "-C", {str(root)!r}, {command!r}]
from cairn.cli.main import main
try:
    main()
except SystemExit as exc:
    assert not exc.code, exc.code
"""


def test_a_run_without_models_or_failures_imports_no_registry_nor_incidents(make_project: ProjectFactory) -> None:
    """Who a run is by comes from `cairn.security.authors`; the incident and alert records are only built when a
    run fails or an incident recovers; contracts, gates and schedules only when the pipeline has them; Rich only
    when the output is a terminal; the records of users, the audit chain, the registry and datasets only when
    one is read or written."""
    root = make_project(TWO_ASSETS)
    unused = {
        "cairn.storage.observations",
        "cairn.core.contracts",
        "cairn.core.gates",
        "cairn.core.automation",
        "cairn.core.governance",
    }
    for command in ("run", "run", "plan"):  # cold, then cached
        loaded = modules_loaded_by(command_code(root, command))
        assert "cairn.engine.prepare" in loaded
        assert not {m for m in loaded if m.startswith(("cairn.registry", "rich"))}, sorted(loaded)
        assert not unused & loaded, sorted(unused & loaded)


def test_reading_commands_load_no_openssl_sockets_decimals_nor_resources(make_project: ProjectFactory) -> None:
    """OpenSSL's hashlib (with `secrets` and `hmac`) is for checkpoints and new tokens, `zipfile` for shipping
    code to remote workers: a run imports none of them. `plan` and `status` only read, so they need no `socket`
    (temporary files of new objects) either, nor `decimal` (describing such a global in a code version), and
    the schema's migrations are listed without `importlib.resources` (each of these takes 2-6 ms to import)."""
    root = make_project(TWO_ASSETS)
    avoidable = {"hashlib", "_hashlib", "socket", "decimal", "fractions", "importlib.abc", "importlib.resources"}
    # a run names temporary files and records its host (socket), but hashes nothing with OpenSSL and ships nothing
    not_for_a_run = {"hashlib", "_hashlib", "secrets", "hmac", "zipfile", "importlib.resources"}
    for command in ("run", "plan", "status"):
        loaded = modules_loaded_by(command_code(root, command))
        unwanted = not_for_a_run if command == "run" else avoidable
        assert not unwanted & loaded, (command, sorted(unwanted & loaded))
