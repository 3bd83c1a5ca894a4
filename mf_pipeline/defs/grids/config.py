"""Typed run config of the grid, calibration and report assets and jobs: every
``mf backtest-grid-*``, ``execution-realism-*`` and ``hybrid-eval-report`` option, once.
``None`` means the settings default (``backtest_sensitivity``,
``backtest_execution_calibration`` and the backtest groups); a run records what was given."""

from pathlib import Path
from typing import Any

import dagster as dg

from mf_pipeline.defs.backtest.config import GateConfig
from mf_pipeline.lib.grids.combos import GridDimensions
from mf_pipeline.lib.grids.run import GridOptions, default_dimensions, grid_options
from mf_pipeline.lib.settings import Settings

DIMENSION_FIELDS = {"hold_bars_grid": "hold_bars", "signal_mode_grid": "signal_mode",
                    "exit_mode_grid": "exit_mode", "fee_bps_grid": "fee_bps_per_side",
                    "slippage_bps_grid": "slippage_bps_per_side",
                    "allow_overlap_grid": "allow_overlap", "equity_mode_grid": "equity_mode",
                    "include_watch_grid": "include_watch",
                    "include_state_ids_grid": "include_state_sets"}  # fmt: skip
"""Config field -> grid dimension (backtest_ops.md §5.1)."""


class GridConfig(GateConfig):
    """A sensitivity grid: the nine dimensions (None: ``default_grid``), the options every
    combo shares (overlay, execution, reports) and what the grid writes."""

    hold_bars_grid: list[int] | None = None
    signal_mode_grid: list[str] | None = None
    exit_mode_grid: list[str] | None = None
    fee_bps_grid: list[float] | None = None
    slippage_bps_grid: list[float] | None = None
    allow_overlap_grid: list[bool] | None = None
    """Only false: positions never overlap."""
    equity_mode_grid: list[str] | None = None
    include_watch_grid: list[bool] | None = None
    include_state_ids_grid: list[list[int]] | None = None
    """State subsets; an empty list = all states."""
    policy_filter_mode: str | None = None
    """Cluster sources: allow_only (default) | allow_watch | all_states."""
    include_ret_cv: bool | None = None
    include_tail_metrics: bool | None = None
    report_top_n: int | None = None
    max_combos: int | None = None
    shuffle_grid: bool = False
    seed: int = 42
    progress_every: int | None = None
    stop_on_error: bool | None = None
    write_combo_runs: bool = False
    """Also write a full backtest folder per combo (slow; off by default)."""
    write_run_manifest: bool = True
    tag: str | None = None
    heatmap_dims: list[str] | None = None
    """Two dimensions for the report's robustness heatmap (default: the first two that vary)."""

    def dims(self, settings: Settings) -> GridDimensions:
        values = self.model_dump()
        return default_dimensions(settings, **{dim: values[name]
                                               for name, dim in DIMENSION_FIELDS.items()})

    def grid(self, settings: Settings, tag: str, **extra: Any) -> GridOptions:
        heat = tuple(self.heatmap_dims) if self.heatmap_dims else None
        if heat is not None and len(heat) != 2:
            raise ValueError(f"heatmap_dims needs exactly two dimensions, got {list(heat)}")
        return grid_options(
            settings, base=self.options(settings), include_ret_cv=self.include_ret_cv,
            include_tail_metrics=self.include_tail_metrics, report_top_n=self.report_top_n,
            max_combos=self.max_combos, shuffle=self.shuffle_grid, seed=self.seed,
            progress_every=self.progress_every, stop_on_error=self.stop_on_error,
            write_combo_runs=self.write_combo_runs, write_run_manifest=self.write_run_manifest,
            tag=(self.tag or tag).replace(" ", "-"), heatmap_dims=heat, extra=extra or None)

    def policy_mode(self, settings: Settings) -> str:
        return self.policy_filter_mode or settings.backtest_sensitivity.policy_filter_mode_default


class SplitGridConfig(GridConfig):
    """A grid over a split's test rows (``backtest_grid``)."""

    sources: list[str] = ["flow", "hmm", "cluster"]
    """flow | hmm | cluster: one source is a single-source grid, more a multi-source grid."""
    non_overlapping_test: bool | None = None
    test_end: str | None = None
    """Last traded date, YYYY-MM-DD (default: the next default train end)."""
    overlay: bool | None = None
    """Gate every source with the split's own cluster policy (implied by an overlay_mode)."""
    out_dir: str | None = None
    """Write the grid here (walk-forward grids put each split under their folder)."""
    grid_run_id: str | None = None


class FileGridConfig(GridConfig):
    """A grid over state-labelled files (``backtest_grid_file_run``): one or more sources."""

    flow_input_file: str | None = None
    hmm_input_file: str | None = None
    cluster_input_file: str | None = None
    hmm_state_col: str = "hmm_state_filtered"
    validation_run_dir: str | None = None
    state_map_file: str | None = None
    cluster_hardening_dir: str | None = None
    overlay_cluster_file: str | None = None
    overlay_cluster_hardening_dir: str | None = None

    def files(self) -> dict[str, Path]:
        files = {"flow": self.flow_input_file, "hmm": self.hmm_input_file,
                 "cluster": self.cluster_input_file}
        return {k: Path(v) for k, v in files.items() if v}


class WfGridConfig(dg.Config):
    """The walk-forward grid aggregate. ``mf backtest-grid-wf-run`` runs the splits' grids
    first and passes its folder."""

    wf_grid_dir: str


class GridCompareConfig(dg.Config):
    grid_run_dirs: list[str]
    metrics: list[str] | None = None
    """Primary metric first (default: ranking_metric_default, expectancy)."""


class CalibrationConfig(GateConfig):
    """``execution-realism-calibrate`` (backtest_ops.md §7.7): no trades, only filters."""

    source: str = "hmm"
    """Split asset: which source's states define the candidate signals."""
    signal_mode: str | None = None
    """Recorded only: calibration generates no signals."""
    sample_frac: float | None = None
    start_date: str | None = None
    end_date: str | None = None
    by_year: bool | None = None
    out_dir: str | None = None


class FileCalibrationConfig(CalibrationConfig):
    source_file: str
    source_type: str = "auto"
    state_col: str | None = None
    validation_run_dir: str | None = None
    cluster_hardening_dir: str | None = None
    state_map_file: str | None = None
    overlay_cluster_file: str | None = None
    overlay_cluster_hardening_dir: str | None = None


class CalibrationReportConfig(dg.Config):
    calibration_dir: str | None = None
    """Default: the newest calibration by its recorded finish time."""


class ReportInputsConfig(dg.Config):
    """Report inputs by name (``execution-realism-report`` / ``hybrid-eval-report`` options);
    a missing one is discovered by the grids' recorded metadata, newest first."""

    dirs: dict[str, str] = {}
