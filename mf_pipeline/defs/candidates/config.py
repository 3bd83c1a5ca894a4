"""Typed run config of the candidate pack and its nightly re-run (backtest_ops.md §9, §10):
every ``mf production-candidates-build`` and ``mf candidate-rerun-run`` option, once. ``None``
means discovery (grid folders) or the settings default (coverage, micro-grid)."""

from pathlib import Path

import dagster as dg

from mf_pipeline.lib.candidates.rerun import RerunOptions

DEFAULT_MIN_TRADES = 25
"""§9.1: ``--min-trades`` default."""

PACK_INPUTS = ("alpha", "exec", "exec2", "wf_baseline", "wf_hybrid", "realism")
"""The pack's input folders by role: the three HMM grids (alpha: no overlay, no profile; exec:
overlay allow_only, profile lite; exec2: no overlay, profile lite), the two walk-forward grids
and the execution-realism report."""


class PackConfig(dg.Config):
    """``production_candidates``: which grids the candidates are selected from. A folder not
    given is the newest one whose recorded settings fit its role."""

    alpha_grid_dir: str | None = None
    """CANDIDATE_ALPHA's grid (old ``--a1-grid-dir``)."""
    exec_grid_dir: str | None = None
    """CANDIDATE_EXEC's grid (old ``--b-grid-dir``); none found: that candidate is skipped."""
    exec2_grid_dir: str | None = None
    """CANDIDATE_EXEC_2's grid (old ``--a2-grid-dir``); none found: that candidate is skipped."""
    wf_baseline_dir: str | None = None
    wf_hybrid_dir: str | None = None
    execution_realism_report_dir: str | None = None
    min_trades: int = DEFAULT_MIN_TRADES
    """Fewest trades a selected combo needs (relaxed to 10 with a warning when none has)."""
    include_exec2: bool = True
    out_dir: str | None = None
    """Write the pack here instead of ``production_candidates/pcp-…``."""

    def dirs(self) -> dict[str, Path | None]:
        """Input folders by role (``PACK_INPUTS``); None = discover."""
        given = (self.alpha_grid_dir, self.exec_grid_dir, self.exec2_grid_dir,
                 self.wf_baseline_dir, self.wf_hybrid_dir, self.execution_realism_report_dir)
        return {role: Path(v) if v else None for role, v in zip(PACK_INPUTS, given, strict=True)}


class RerunConfig(dg.Config):
    """``candidate_rerun``: the pack to re-run and the options the locked strategy does not fix
    (the as-of date is the partition key); the fields of ``lib.candidates.rerun.RerunOptions``."""

    pcp_pack_dir: str | None = None
    """Default: the pack of the latest ``production_candidates`` materialization."""
    run_micro_grid: bool | None = None
    """A small grid around each locked strategy (default: candidate_rerun.micro_grid)."""
    overlay_coverage_mode: str | None = None
    """warn_only | strict_fail (default: overlay_coverage_policy.coverage_mode)."""
    overlay_coverage_bypass: bool = False
    coverage: dict[str, float] = {}
    """Overlay coverage thresholds by their overlay_coverage_policy names (min_match_rate_warn,
    min_match_rate_fail, min_year_match_rate_warn, min_year_match_rate_fail, unknown_rate_warn,
    unknown_rate_fail); the rest from the settings."""
    coverage_drift_warn_drop: float | None = None
    """Match-rate drop that warns (default candidate_rerun.drift.coverage_drift_warn_drop_abs)."""
    coverage_drift_fail_match: float | None = None
    """Match rate below which coverage fails (default coverage min_match_rate_fail, else
    candidate_rerun.drift.coverage_drift_fail_match_rate)."""
    wf_grid_dir: str | None = None
    """A walk-forward grid folder: each locked combo's rows of its splits are summarised."""

    def options(self) -> RerunOptions:
        """The library's re-run options (an unknown coverage name is an error there)."""
        values = self.model_dump(exclude={"pcp_pack_dir"})
        values["wf_grid_dir"] = Path(self.wf_grid_dir) if self.wf_grid_dir else None
        return RerunOptions(**values)
