"""The CLI's output where people read it: pipes, narrow terminals, one-line errors, retraining runs,
what a run added; through the CLI as a user runs it."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

import cli.app as cli_app
from tests.conftest import cli, cli_json, upload

pytestmark = pytest.mark.workflow

ROOT = Path(__file__).resolve().parents[2]


def shell(command: str, columns: int = 80) -> subprocess.CompletedProcess[str]:
    """A command line as a user types it, in a shell, against the served stack of this test."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": str(columns)}
    return subprocess.run(command, shell=True, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)


BATCHINFER = f"{sys.executable} -m cli.app"


@pytest.fixture
def two_runs(served: Any, held_out_digits: list[Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    for digit in held_out_digits[:6]:
        upload(served, f"incoming/first-{digit.index}.png", digit.png)
    first = cli_json("start", "--wait")
    for digit in held_out_digits[6:10]:
        upload(served, f"incoming/second-{digit.index}.png", digit.png)
    second = cli_json("start", "--wait")
    return first, second


def test_runs_piped_prints_each_run_id_whole_on_one_line(two_runs: Any) -> None:
    result = shell(f"{BATCHINFER} runs | cat", columns=40)
    assert result.returncode == 0, result.stderr
    header, *lines = result.stdout.splitlines()
    assert header.split() == ["run", "mode", "status", "started", "seconds", "scored", "failed", "outcome"]
    assert [line.split()[0] for line in lines] == [two_runs[1]["run_id"], two_runs[0]["run_id"]]
    assert lines[0].split()[1:3] == ["score", "SUCCEEDED"] and lines[0].split()[-2:] == ["4", "0"]
    assert not any(ch in result.stdout for ch in "┃│…")  # no box, nothing cut


def test_predictions_links_piped_prints_each_link_whole_on_one_line(two_runs: Any) -> None:
    result = shell(f"{BATCHINFER} predictions --links | cat", columns=40)
    assert result.returncode == 0, result.stderr
    header, *lines = result.stdout.splitlines()
    assert header.split() == ["date", "class", "confidence", "kept", "captured_at", "model_version", "link"]
    assert len(lines) == 10
    expected = {row["link"].split("&X-Amz-Date=")[0] for row in cli_json("predictions", "--links")}
    links = [line.split()[-1] for line in lines]
    assert all(link.startswith("http://127.0.0.1:") and "X-Amz-Signature=" in link for link in links)
    assert {link.split("&X-Amz-Date=")[0] for link in links} == expected


def test_a_narrow_terminal_keeps_the_key_columns_whole(two_runs: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def on_terminal(width: int, *args: str) -> str:
        screen = io.StringIO()
        monkeypatch.setattr(cli_app, "console", Console(file=screen, force_terminal=True, width=width,
                                                        color_system=None))
        assert cli(*args).exit_code == 0
        return screen.getvalue()

    run_id = two_runs[0]["run_id"]
    wide = on_terminal(200, "runs")
    assert "┃ run" in wide and any(run_id in line for line in wide.splitlines())  # a table, ids whole
    narrow = on_terminal(50, "runs")
    assert any(line.startswith(run_id) for line in narrow.splitlines())  # plain rows, nothing cut
    shown = on_terminal(60, "show", run_id)
    assert run_id in shown and "…" not in shown.split("failed item(s)")[0]


def test_errors_are_one_line_whatever_the_width(served: Any) -> None:
    long_id = "no-such-run-" + "x" * 120
    result = shell(f"{BATCHINFER} show {long_id}", columns=40)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"error: unknown run id {long_id!r}: `batchinfer runs` lists the recent runs"]


def test_the_fault_help_is_whole() -> None:
    for command in ("local serve", "demo"):
        result = shell(f"{BATCHINFER} {command} --help", columns=80)
        text = " ".join(result.stdout.split())
        assert "…" not in result.stdout
        assert "SPEC is FUNCTION:KIND[:WHEN[:TIMES]]" in text and "ClassifyBatch:timeout:batch-00000:1" in text


def test_a_run_summary_says_what_the_run_added_apart_from_the_day(two_runs: Any) -> None:
    first, second = two_runs
    day = next(iter(second["output"]["daily_counts"]))
    assert sum(second["added"][day].values()) == 4 and sum(first["added"][day].values()) == 6
    assert sum(second["output"]["daily_counts"][day].values()) == 10
    text = cli("show", second["run_id"]).stdout
    added = text.split("added by this run:")[1].split("day totals")[0]
    assert f"{day}:" in added and added.strip().endswith("(4)")
    assert text.split("day totals when it ended (every run so far):")[1].strip().splitlines()[0].endswith("(10)")


def test_a_retraining_run_shows_its_outcome_in_start_show_and_runs(served: Any) -> None:
    waited = cli("start", "--mode", "retrain", "--wait")
    assert waited.exit_code == 0, waited.output
    assert "retraining: skipped; digits serves v1" in waited.stdout
    assert "reason: too little new labelled data: 0 new labelled image(s)" in waited.stdout
    assert "images scored: None" not in waited.stdout
    (row,) = cli_json("runs")
    assert (row["mode"], row["outcome"], row["scored"]) == ("retrain", "skipped", None)
    detail = cli_json("show", row["run_id"])
    assert detail["retrain"]["outcome"] == "skipped" and detail["retrain"]["serving"] == "v1"
    assert detail["retrain"]["labels"] == [str(n) for n in range(10)] and detail["retrain"]["new_labels"] == 0
    assert cli("runs").stdout.splitlines()[1].split()[-1] == "skipped"


@pytest.mark.parametrize("entrance", [["start", "--mode", "replay", "--run", "no-such-run"],
                                      ["replay", "no-such-run"]])
def test_replay_of_an_unknown_run_is_exit_2_from_every_entrance(served: Any, entrance: list[str]) -> None:
    result = cli(*entrance)
    assert result.exit_code == 2 and "unknown run id 'no-such-run'" in result.output
    assert cli_json("runs") == []  # and nothing was started
