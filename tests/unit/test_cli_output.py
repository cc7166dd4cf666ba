"""Plain-text output of the CLI off a terminal: aligned tables and the run summary, printed as they are."""

from __future__ import annotations

import sys

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


def test_on_a_terminal_the_header_is_bold_and_statuses_are_coloured(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    print_rows(["step", "status"], [["a", "failed"], ["b", "cached"]])
    summary(RunResult("run-2", "succeeded", (StepResult("a", "", "executed", 1, "k", "d", 0.5, "never"),)), 0.5)
    assert capsys.readouterr().out.splitlines() == [
        "\033[1mstep\033[0m  \033[1mstatus\033[0m",
        "a     \033[1;31mfailed\033[0m",
        "b     \033[2mcached\033[0m",
        "\033[1mstep\033[0m  \033[1mstatus  \033[0m  \033[1mattempts\033[0m  \033[1mduration\033[0m  "
        "\033[1mreason\033[0m",
        "a     \033[32mexecuted\033[0m  1         500ms     never",
        "run run-2 \033[32msucceeded\033[0m: 1 executed in 0.50s",
    ]
