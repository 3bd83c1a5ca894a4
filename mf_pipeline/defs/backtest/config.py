"""Typed run config of the backtest assets and jobs: every ``mf backtest-*`` option, once.
``None`` means the settings default (``backtest``, ``backtest_policy_overlay``,
``overlay_coverage_policy``, ``backtest_execution_realism``); a run records what was given."""

from typing import Any

import dagster as dg

from mf_pipeline.lib.settings import Settings
from mf_pipeline.lib.steps.backtest.options import BacktestOptions, backtest_options


class GateConfig(dg.Config):
    """Overlay, execution and report options every trade of a run or grid shares
    (backtest_ops.md §6, §7; docs/BACKTESTS.md)."""

    allow_unconfirmed: bool | None = None
    overlay_mode: str | None = None
    overlay_join_keys: list[str] | None = None
    overlay_coverage_mode: str | None = None
    overlay_coverage_bypass: bool | None = None
    overlay_unknown_handling: str | None = None
    overlay_min_match_rate_warn: float | None = None
    overlay_min_match_rate_fail: float | None = None
    overlay_min_year_match_rate_warn: float | None = None
    overlay_min_year_match_rate_fail: float | None = None
    overlay_unknown_rate_warn: float | None = None
    overlay_unknown_rate_fail: float | None = None
    exec_profile: str | None = None
    """none (default) | lite | strict."""
    exec_min_price: float | None = None
    exec_min_dollar_vol20: float | None = None
    exec_max_vol_pct: float | None = None
    exec_min_history_bars: int | None = None
    report_min_trades: int | None = None
    report_max_zero_trade_share: float | None = None
    report_max_ret_cv: float | None = None
    export_joined_rows: bool | None = None

    def options(self, settings: Settings) -> BacktestOptions:
        return backtest_options(settings, **self.strategy())

    def strategy(self) -> dict[str, Any]:
        """The backtest options this config sets (its own fields only, not a subclass's)."""
        names = set(type(self)._option_fields())
        return {k: v for k, v in self.model_dump().items() if k in names}

    @classmethod
    def _option_fields(cls) -> set[str]:
        return set(GateConfig.model_fields)

    def given(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump(exclude_defaults=True).items()}


class StrategyConfig(GateConfig):
    """Strategy, overlay and execution options of one backtest (backtest_ops.md §1, §6, §7)."""

    signal_mode: str | None = None
    """state_entry | state_transition_entry (default) | state_persistence_confirm."""
    exit_mode: str | None = None
    """horizon | state_exit | horizon_or_state (default)."""
    hold_bars: int | None = None
    include_watch: bool | None = None
    """Cluster sources: trade WATCH states too."""
    include_state_ids: list[int] | None = None
    fee_bps_per_side: float | None = None
    slippage_bps_per_side: float | None = None
    equity_mode: str | None = None
    """event_returns_only (default) | daily_equity_curve (old exit-date curve) |
    daily_mark_to_market (every trading day, open positions at the close)."""

    @classmethod
    def _option_fields(cls) -> set[str]:
        return set(StrategyConfig.model_fields)


class SplitBacktestConfig(StrategyConfig):
    non_overlapping_test: bool | None = None
    """Trade a walk-forward split only up to the next train end (default: settings, true)."""
    test_end: str | None = None
    """Last traded date, YYYY-MM-DD (default: the next default train end)."""
    overlay: bool | None = None
    """Gate the signals with the split's own cluster policy (implied by an overlay_mode other
    than none)."""


class FileBacktestConfig(StrategyConfig):
    """``mf backtest-run --input-file``: any state-labelled Parquet/CSV (backtest_ops.md §1.1)."""

    input_type: str
    input_file: str
    hmm_state_col: str = "hmm_state_filtered"
    """HMM state column; ``hmm_state`` (Viterbi) looks ahead and marks the run in-sample."""
    validation_run_dir: str | None = None
    cluster_hardening_dir: str | None = None
    state_map_file: str | None = None
    overlay_cluster_file: str | None = None
    overlay_cluster_hardening_dir: str | None = None
    tag: str | None = None


class CompareConfig(dg.Config):
    run_dirs: list[str]


class WfBacktestConfig(dg.Config):
    """The walk-forward aggregate. ``mf backtest-wf-run`` runs the splits' backtests first and
    passes its folder; from the UI, without a folder, it covers the latest materializations of
    the default splits."""

    wf_bt_dir: str | None = None
