"""Plain-text output of the CLI off a terminal: aligned tables and the run summary, printed as they are."""

from __future__ import annotations

import pytest

from cairn.cli.common import print_rows
from cairn.cli.run import summary
from cairn.engine.results import RunResult, StepResult


def test_a_table_aligns_every_column_but_the_last_and_ends_no_line_with_spaces(
    capsys: pytest.CaptureFixture[str],
) -> None:
    print_rows(["step", "action", "reason"], [["a", "run", ""], ["long_name@2026-01-01", "cached", "cached"]])
    assert capsys.readouterr().out.splitlines() == [
        "step                  action  reason",
        "a                     run",
        "long_name@2026-01-01  cached  cached",
    ]


def test_a_table_prints_braces_and_markup_in_cells_as_they_are(capsys: pytest.CaptureFixture[str]) -> None:
    print_rows(["a", "b"], [["{0}", "[bold]x[/]"], ["{}", "{name}"]])
    assert capsys.readouterr().out.splitlines() == ["a    b", "{0}  [bold]x[/]", "{}   {name}"]


def test_the_run_summary_lists_what_did_not_come_from_the_cache_and_each_error_verbatim(
    capsys: pytest.CaptureFixture[str],
) -> None:
    steps = (
        StepResult("raw", "", "cached", 0, "k1", "d1", 0.0, "cached"),
        StepResult("clean", "2026-01-01", "failed", 2, "k2", None, 0.25, "param changed: k [1]→[2]", "boom [/red]"),
        StepResult("model", "", "skipped", 0, None, None, None, "upstream failed: clean@2026-01-01"),
    )
    summary(RunResult("run-1", "failed", steps), 1.5)
    assert capsys.readouterr().out.splitlines() == [
        "step              status   attempts  duration  reason",
        "clean@2026-01-01  failed   2         250ms     param changed: k [1]→[2]",
        "model             skipped  0         -         upstream failed: clean@2026-01-01",
        "clean@2026-01-01 failed:",
        "boom [/red]",
        "run run-1 failed: 1 cached, 1 failed, 1 skipped in 1.50s",
    ]
