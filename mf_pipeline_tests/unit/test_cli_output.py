"""The CLI's output conventions: help not cut at 80 columns, the human summary, progress bars."""

import re

import pytest
from typer.testing import CliRunner

from mf_pipeline.cli import app
from mf_pipeline.cli.app import plain, run_summary
from mf_pipeline.orchestration.progress import Display
from mf_pipeline.orchestration.runner import RunOutcome

CUT = re.compile(r"[\w-]…|[\w,:;)]\.\.\.$", re.M)
"""A word cut short by an ellipsis: rich's ``…``, or click's ``...`` ending a command's short
help in a list (a lone ``…`` between spaces is text, as in ``→ … →``; ``[ARGS]...`` is usage)."""


def _help(*args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "80"},
                                terminal_width=80)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("command", [None, *sorted(c.name for c in app.registered_commands
                                                     if c.name)])
def test_help_at_80_columns_cuts_nothing(command: str | None) -> None:
    text = _help(*([command] if command else []))
    assert not CUT.findall(text), [line for line in text.splitlines() if CUT.search(line)]
    assert max(map(len, text.splitlines())) <= 80


def test_long_option_names_are_printed_whole() -> None:
    """The names rich's option table used to cut (``--min-sequence-l…``)."""
    text = _help("research-hmm-run")
    for option in ("--min-sequence-length", "--cluster-labels-file", "--write-full-decoded-csv"):
        assert option in text


def test_plain_prints_key_value_lines_with_nesting() -> None:
    payload = {"rows": 1234567, "ratio": 0.123456789, "metrics": {"ari": 0.5, "k": 3},
               "tickers": ["A.US", "B.US"], "path": "/x"}
    assert plain(payload) == (
        "rows: 1,234,567\nratio: 0.123457\nmetrics:\n  ari: 0.5\n  k: 3\n"
        'tickers: ["A.US", "B.US"]\npath: /x')


def test_run_summary_shows_headline_numbers_per_asset_then_the_run() -> None:
    outcome = RunOutcome(run_ids=["r-1"], seconds=12.345, metadata={
        "manifest": {"files": 75, "tickers_to_process": 3, "seconds": 0.25, "raw_root": "/r"},
        "silver": {"tickers_written": 3, "rows_written": 15000, "run_id": "silver-run-1"},
        "silver_sanity": {"path": "/a.json"},
    })
    assert run_summary(outcome).splitlines() == [
        "  manifest       75 files, 3 tickers to process, 0.2s",
        "  silver         3 tickers written, 15,000 rows written",
        "  silver_sanity  done",
        "3 asset(s) in 12.3s, Dagster run r-1",
        "details: --json, or `make ui` then http://127.0.0.1:3000/runs/r-1",
    ]
    assert run_summary(RunOutcome()) == "nothing to run: the lake is up to date"


def test_run_summary_of_research_models_shows_their_fit_and_recovery() -> None:
    outcome = RunOutcome(run_ids=["r-2"], seconds=20.0, metadata={
        "hmm_model": {"rows_fit": 88618, "ari_hmm_state_filtered": 0.21348, "ari_hmm_state": 0.2,
                      "in_sample": True},
        "cluster_model": {"rows_fit": 65299, "silhouette": 0.31069, "ari_cluster_id": 0.186},
    })
    assert run_summary(outcome).splitlines()[:2] == [
        "  hmm_model      88,618 rows fitted, 0.21348 ARI of the filtered states vs the true "
        "regimes",
        "  cluster_model  65,299 rows fitted, 0.31069 silhouette, 0.186 ARI vs the true regimes",
    ]


def test_batch_messages_advance_the_steps_bar_and_are_printed() -> None:
    lines: list[str] = []
    display = Display(lines.append, {"ticker_layers": "silver, features"}, bars=True)
    display.step_started("ticker_layers")
    display.message("ticker_layers", "batch 2/5: 300 tickers computed")
    task = display.bars.tasks[display.tasks["ticker_layers"]]
    assert (task.completed, task.total, task.description) == (2, 5, "silver, features")
    display.step_finished("ticker_layers", ok=True)
    assert (task.completed, task.total) == (5, 5)
    assert task.description.startswith("silver, features: done in ")
    assert lines == ["batch 2/5: 300 tickers computed"]


def test_without_bars_each_finished_step_is_one_line() -> None:
    lines: list[str] = []
    display = Display(lines.append, {"bronze": "bronze"}, bars=False)
    display.step_started("bronze")
    display.message("bronze", "bronze batch 1/2: 40 files parsed")
    display.step_finished("bronze", ok=False)
    assert lines[0] == "bronze batch 1/2: 40 files parsed"
    assert re.fullmatch(r"bronze: FAILED after \d+\.\ds", lines[1])
    assert len(lines) == 2
