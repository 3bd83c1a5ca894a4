"""The ``grid`` rows of docs/BENCHMARKS.md (``bench/grid.py``): per-combo seconds, the speed-up
against the old tool's 31 s per combo and the target verdicts, from hand-made medians."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if not (ROOT / "bench" / "grid.py").is_file():  # pragma: no cover - installed without checkout
    pytest.skip("bench/ is not in this checkout", allow_module_level=True)
sys.path.insert(0, str(ROOT))

from bench import grid  # noqa: E402


def _grid(combos: int, wall: float, peak: float) -> dict[str, Any]:
    median = {"combos": combos, "rows": 1_088_783, "trades": 1_234_567, "duration_sec": 5.0,
              "load_s": 0.25, "simulate_s": 3.0, "score_s": 1.0, "write_s": 0.75,
              "asset_s": 6.5, "run_start_s": 2.25, "wall_s": wall, "cpu_s": 9.0,
              "peak_rss_mb": peak,
              "others_cpu_frac": 0.25, "load_before": [[1.5, 1, 1], [2.5, 1, 1]]}
    runs = [{"wall_s": wall - 1, "others_cpu_frac": 0.0}, {"wall_s": wall, "others_cpu_frac": 0.5}]
    return {"options": {"--fee-bps-grid": "0,10"}, "median": median, "runs": runs}


def _rows(lines: list[str]) -> dict[str, list[str]]:
    return {cells[0]: cells for line in lines if line.startswith("| ")
            and (cells := [c.strip() for c in line.strip("|").split("|")])[0] != "grid"}


def test_per_combo_speed_up_and_targets() -> None:
    entry = {"grid": {"input": "decoded_rows.parquet", "repeat": 3, "measured": "T",
                      "grids": {"100 combos": _grid(100, 8.0, 1500.0),
                                "old tool's 6": _grid(6, 3.0, 900.0)}}}
    lines = grid.report_lines(entry)
    rows = _rows(lines)
    big, old = rows["100 combos"], rows["old tool's 6"]
    # columns: grid, dimensions, combos, rows, trades, duration, 4 stages, asset, start → run,
    # wall, CPU, peak, wall / combo, others' CPU, load, old tool, speed-up
    assert big[2:6] == ["100", "1,088,783", "1,234,567", "5"]
    assert big[6:10] == ["0.25", "3", "1", "0.75"]
    assert big[10:12] == ["6.5", "2.25"]
    assert big[15] == "0.08"  # 8 s / 100 combos
    assert big[16:18] == ["25%", "1.5–2.5"]
    assert big[18] == "31 s / combo" and big[19] == "388x"  # 31 / 0.08 = 387.5
    assert old[15] == "0.5" and old[18] == "186 s, 6.9 GB" and old[19] == "62x"
    verdict = next(line for line in lines if line.startswith("Targets"))
    assert "wall < 10 s: **met** (8 s)" in verdict
    assert "< 2 GB: **met** (1,500 MB)" in verdict
    assert verdict.endswith("Each run's wall (others' CPU): 7 s (0%), 8 s (50%).")


def test_missed_targets_and_empty_section() -> None:
    entry = {"grid": {"input": "x.parquet", "repeat": 1,
                      "grids": {"100 combos": _grid(100, 12.5, 2100.0)}}}
    verdict = next(line for line in grid.report_lines(entry) if line.startswith("Targets"))
    assert "**not met** (12.5 s)" in verdict and "**not met** (2,100 MB)" in verdict
    assert grid.report_lines({}) == []


def test_command_passes_the_grid_dimensions() -> None:
    cmd = grid.command(Path("rows.parquet"), "100 combos")
    assert cmd[1:6] == ["backtest-grid-run", "--input-type", "flow", "--input-file",
                        "rows.parquet"]
    dims = dict(zip(cmd[6:-1:2], cmd[7:-1:2], strict=True))
    sizes = [len(v.split(",")) for v in dims.values()]
    assert sizes == [10, 5, 2] and cmd[-1] == "--json"
