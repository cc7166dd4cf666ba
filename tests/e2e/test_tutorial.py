"""docs/tutorial.md cannot rot: every command it shows runs here, in order, and its shown output must appear.

The tutorial's ```console blocks hold the commands (lines starting with ``$ ``) and, under each, lines of
its output. A shown output line must match an output line (stdout and stderr together, stripped) in the
same order; ``…`` stands for any text and runs of spaces for any whitespace, so run ids, timings and hashes
may differ while everything else has to be exactly what cairn prints. ``(exit status N)`` gives the expected
exit code (0 otherwise). The commands run through bash in a copy of examples/recsys at a small scale.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.e2e.test_recsys import small_copy

TUTORIAL = Path(__file__).resolve().parents[2] / "docs" / "tutorial.md"
EXIT = re.compile(r"^\(exit status (\d+)\)$")
# What the walkthrough must show (the list); each is a prefix of one of its commands.
REQUIRED = (
    "cairn plan",
    "cairn run",
    "cairn why ",
    "cairn run --set user_features.",
    "cairn lineage model",
    "cairn diff ",
    "cairn run --profile ",
    "cairn run --set 'raw_events.duplicate_days=",
    "cairn backfill labels",
    "cairn backfill status",
    "cairn reproduce ",
)


@dataclass
class Command:
    line: int
    text: str
    expected: list[str] = field(default_factory=list)
    exit_code: int = 0


def parse(markdown: str) -> list[Command]:
    """The commands of the ```console blocks, each with the output lines shown under it."""
    commands: list[Command] = []
    in_console = False
    for number, raw in enumerate(markdown.splitlines(), start=1):
        line = raw.rstrip()
        if line.startswith("```"):
            in_console = line == "```console" and not in_console
            continue
        if not in_console:
            assert not line.startswith("$ "), f"tutorial line {number}: a command outside a ```console block"
            continue
        if line.startswith("$ "):
            commands.append(Command(number, line[2:].strip()))
            continue
        assert commands, f"tutorial line {number}: output before the first command of a block"
        shown = line.strip()
        if shown in ("", "…"):
            continue
        exit_code = EXIT.match(shown)
        if exit_code:
            commands[-1].exit_code = int(exit_code.group(1))
        else:
            commands[-1].expected.append(shown)
    return commands


def pattern(shown: str) -> re.Pattern[str]:
    """A shown line as a regular expression: ``…`` is any text, spaces are any whitespace."""
    parts = [r"\s+".join(re.escape(word) for word in piece.split()) for piece in shown.split("…")]
    return re.compile(".*?".join(parts))


def unmatched(expected: list[str], output: str) -> list[str]:
    """The shown lines that do not match the output's lines in order (empty when all do)."""
    lines = [line.strip() for line in output.splitlines()]
    position = 0
    for i, shown in enumerate(expected):
        regex = pattern(shown)
        for j in range(position, len(lines)):
            if regex.fullmatch(lines[j]):
                position = j + 1
                break
        else:
            return expected[i:]
    return []


def test_the_tutorial_is_well_formed_and_shows_every_step() -> None:
    commands = parse(TUTORIAL.read_text(encoding="utf-8"))
    texts = [c.text for c in commands]
    for required in REQUIRED:
        assert any(t.startswith(required) for t in texts), f"the tutorial has no `{required}…` command"
    for command in commands:
        if not command.text.startswith("cd "):
            assert command.expected, f"tutorial line {command.line}: `{command.text}` shows no output to check"
    failing = [c.exit_code for c in commands if c.exit_code]
    assert failing == [1, 1], "exactly two commands fail: the contract violation and the self-approval"


def test_patterns_allow_what_changes_and_nothing_else() -> None:
    assert unmatched(["run … succeeded: 347 cached in …s"], "run 20261123-1-ab succeeded: 347 cached in 0.31s\n") == []
    assert unmatched(["run … succeeded: 347 cached in …s"], "run x succeeded: 346 cached in 0.31s\n") != []
    assert unmatched(["a  b", "c"], " a     b  \n c \n") == []
    assert unmatched(["c", "a b"], "a b\nc\n") == ["a b"], "shown lines must come in the order printed"


@pytest.mark.slow
def test_every_tutorial_command_runs_and_prints_what_the_tutorial_shows(tmp_path: Path) -> None:
    small_copy(tmp_path)
    cwd = tmp_path
    env = {
        **os.environ,
        "COLUMNS": "200",
        "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
    }
    for command in parse(TUTORIAL.read_text(encoding="utf-8")):
        if command.text.startswith("cd "):
            cwd = (cwd / command.text[3:].strip()).resolve()
            assert cwd.is_dir(), f"tutorial line {command.line}: no folder {cwd}"
            continue
        done = subprocess.run(
            ["bash", "-c", command.text], cwd=cwd, capture_output=True, text=True, env=env, timeout=900
        )
        output = done.stdout + done.stderr
        where = f"tutorial line {command.line}: `{command.text}`"
        assert done.returncode == command.exit_code, f"{where} exited {done.returncode}\n{output}"
        missing = unmatched(command.expected, output)
        assert not missing, f"{where}: the output lacks (from here on)\n  " + "\n  ".join(missing) + f"\n\n{output}"
