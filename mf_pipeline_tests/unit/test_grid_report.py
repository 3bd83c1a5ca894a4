"""``grid_report.md`` rendered from a grid folder: aggregates written by ``write_aggregates``
from a hand-made table plus a hand-written summary (exact values, warnings), and a real grid
folder from ``run_grid`` (the report re-renders identically from the folder alone)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mf_pipeline.lib import lake
from mf_pipeline.lib.grids.aggregates import write_aggregates
from mf_pipeline.lib.grids.report import grid_report_md
from mf_pipeline_tests.unit.test_grid_aggregates import INF, _table

OVERFIT = {
    "flow": {"n_trials": 6, "periods": 250, "period": "exit_day", "best_combo_id": "flow-02",
             "best_sharpe": 0.12, "sr0": 0.1, "dsr": 0.61, "max_sharpe_combo_id": "flow-01",
             "max_sharpe": 0.13, "dsr_max_sharpe": 0.66, "pbo": 0.43, "pbo_n_splits": 16,
             "pbo_n_combinations": 12870, "pbo_degradation_slope": -0.5,
             "pbo_prob_oos_loss": 0.3, "fluke_risk": "MODERATE", "note": None},
    "hmm": {"n_trials": 1, "periods": 250, "dsr": None, "pbo": None, "fluke_risk": "UNKNOWN",
            "note": "fewer than 2 combos traded"},
}


def _folder(tmp_path: Path, **summary: Any) -> Path:
    """Six flow combos (hold 5/10 x fee 0/5/10; expectancy falls with hold; idx 2 never lost)
    and one hmm combo; one flow combo failed."""
    exp = [0.02, 0.01, 0.0, -0.01, -0.02, -0.03]
    rows = [{"hold_bars": h, "fee_bps_per_side": f, "total_cost_bps": f, "expectancy": e,
             "robustness_score_v2": 60.0 - i, "profit_factor": INF if i == 1 else 1.5 - i / 10,
             "profit_factor_inf": i == 1}
            for i, (h, f, e) in enumerate(zip([5, 5, 5, 10, 10, 10], [0.0, 5.0, 10.0] * 2, exp,
                                              strict=True))]
    table = _table([*rows, {"source_type": "hmm", "total_cost_bps": 0.0}])
    manifest = _table([*rows, {"status": "FAILED", "hold_bars": 20},
                       {"source_type": "hmm", "total_cost_bps": 0.0}])
    write_aggregates(tmp_path, table, manifest, None, top_n=10)
    base = {"grid_run_id": "grid-abc", "scope": "multi-flow-hmm", "tag": "t",
            "comparability": "ALIGNED", "total_combos": 8, "successful_combos": 7,
            "failed_combos": 1, "drawdown_ranked": False,
            "sources": [{"source_type": "flow", "in_sample": False},
                        {"source_type": "hmm", "in_sample": True}],
            "dimensions": {"hold_bars": [5, 10, 20], "fee_bps_per_side": [0.0, 5.0, 10.0]},
            "overfitting": OVERFIT}
    lake.write_json({**base, **summary}, tmp_path / "grid_summary.json")
    lake.write_json([{"source_type": "flow", "combo_id": "flow-07", "combo_index": 7,
                      "error_message": "boom", "traceback": "..."}],
                    tmp_path / "grid_failures.json")
    return tmp_path


def _section(text: str, title: str) -> str:
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def _table_rows(block: str) -> list[list[str]]:
    """Header and data rows of the first Markdown table in ``block``."""
    lines = block.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("| "))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        if not line.startswith("|---"):
            rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def test_report_warnings_and_overfitting_block(tmp_path: Path) -> None:
    text = grid_report_md(_folder(tmp_path))
    assert text.startswith("# Sensitivity grid report: grid-abc\n")
    assert "> **In-sample: YES** for hmm:" in text
    assert "> **Drawdown not ranked**" in text
    block = _section(text, "How likely is the winner a fluke?")
    rows = _table_rows(block)
    header, flow, hmm = rows[0], rows[1], rows[2]
    cell = dict(zip(header, flow, strict=True))
    assert (cell["source_type"], cell["n_trials"], cell["best_combo_id"], cell["dsr"],
            cell["pbo"], cell["fluke_risk"]) == ("flow", "6", "flow-02", "0.61", "0.43",
                                                 "MODERATE")
    cell = dict(zip(header, hmm, strict=True))
    assert (cell["dsr"], cell["fluke_risk"], cell["note"]) == (
        "—", "UNKNOWN", "fewer than 2 combos traded")
    assert ("DSR** (Deflated Sharpe Ratio) = probability the winner's Sharpe beats the best of "
            "N skill-less trials") in block
    assert "**PBO**" in block and "**fluke_risk**" in block


def test_report_without_warnings(tmp_path: Path) -> None:
    folder = _folder(tmp_path, drawdown_ranked=True,
                     sources=[{"source_type": "flow", "in_sample": False},
                              {"source_type": "hmm", "in_sample": None}])
    text = grid_report_md(folder)
    assert "In-sample: YES" not in text and "Drawdown not ranked" not in text
    # only the grid-level flag (sources without theirs)
    folder = _folder(tmp_path, in_sample=True, sources=[{"source_type": "flow"}])
    assert "> **In-sample: YES** for a source:" in grid_report_md(folder)


def test_report_tables_from_the_aggregates(tmp_path: Path) -> None:
    text = grid_report_md(_folder(tmp_path))
    assert "  - hold_bars: 5, 10, 20" in _section(text, "Run")
    sources = _table_rows(_section(text, "Sources"))
    assert [r[0] for r in sources[1:]] == ["flow", "hmm"]
    assert dict(zip(sources[0], sources[1], strict=True))["FAILED"] == "1"
    best = _section(text, "Best configurations")
    by_pf = _table_rows(best.split("### flow: top 5 by profit_factor\n", 1)[1])
    header = by_pf[0]
    first = dict(zip(header, by_pf[1], strict=True))
    assert (first["combo_index"], first["profit_factor"]) == ("2", "inf")  # flag survives JSON
    assert len(by_pf) == 1 + 5  # top 5 of the 6 flow combos
    assert "### hmm: top 1 by robustness_score_v2" in best
    assert "- flow: **MONOTONIC_DOWN** on expectancy_mean, best hold 5" in text
    assert "- hmm: **FLAT_OR_NOISY** on expectancy_mean, best hold —" in text
    sens = _table_rows(_section(text, "Dimension sensitivity"))
    varied = {(r[0], r[1], r[2]) for r in sens[1:]}
    # only dimensions taking more than one value in their source
    assert varied == {("flow", "hold_bars", "5"), ("flow", "hold_bars", "10"),
                      ("flow", "fee_bps_per_side", "0.0"), ("flow", "fee_bps_per_side", "5.0"),
                      ("flow", "fee_bps_per_side", "10.0")}
    fragility = _table_rows(_section(text, "Cost fragility"))
    row = dict(zip(fragility[0], fragility[1], strict=True))
    # hold 5: expectancy 0.02, 0.01, 0.0 at x = 0, 0.5, 1 -> -0.02 per 10 bps
    assert (row["source_type"], row["hold_bars"]) == ("flow", "5")
    assert float(row["expectancy_slope_per_10bps"]) == pytest.approx(-0.02)
    assert "| flow | 7 | flow-07 | boom |" in _section(text, "Failures")


def test_report_of_a_folder_without_aggregates(tmp_path: Path) -> None:
    lake.write_json({"grid_run_id": "g"}, tmp_path / "grid_summary.json")
    text = grid_report_md(tmp_path)
    assert "_not computed_" in _section(text, "How likely is the winner a fluke?")
    assert "_not written_" in _section(text, "Cost fragility")
    assert "- no failed combo" in text
    lake.write_json({}, tmp_path / "grid_best_configs.json")
    assert "_no successful combo_" in _section(grid_report_md(tmp_path), "Best configurations")


def test_report_of_a_real_grid_folder(tmp_path: Path) -> None:
    from mf_pipeline.lib.grids.combos import GridDimensions
    from mf_pipeline.lib.grids.run import GridOptions, GridSource, run_grid
    from mf_pipeline.lib.settings import load_settings
    from mf_pipeline_tests.unit.test_grid_engine import _inputs

    dims = GridDimensions(hold_bars=(3, 10), fee_bps_per_side=(0.0, 10.0))
    out = run_grid(load_settings(), [GridSource(_inputs())], dims, GridOptions(tag="t"),
                   folder=tmp_path / "grid-x")
    text = grid_report_md(out.output_dir)
    assert text == (out.output_dir / "grid_report.md").read_text()
    summary = json.loads((out.output_dir / "grid_summary.json").read_text())
    rows = _table_rows(_section(text, "How likely is the winner a fluke?"))
    cell = dict(zip(rows[0], rows[1], strict=True))
    block = summary["overfitting"]["flow"]
    assert (cell["best_combo_id"], cell["fluke_risk"]) == (block["best_combo_id"],
                                                           block["fluke_risk"])
    shape = summary["hold_shapes"]["flow"]["hold_shape"]
    assert f"- flow: **{shape}** on expectancy_mean" in text
    assert "### flow: top 4 by expectancy" in text
