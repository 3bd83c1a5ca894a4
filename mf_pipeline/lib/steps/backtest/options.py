"""The options of one backtest run: the ``backtest``, ``backtest_policy_overlay``,
``overlay_coverage_policy`` and ``backtest_execution_realism`` settings with the run's
overrides (every ``mf backtest-run`` option, once).

The options' payload is part of the run id, so the same inputs and options always land in the
same folder (the old ids were random and ``--force`` reused the newest folder by mtime).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from mf_pipeline.lib.backtest.modes import EXIT_MODES, SIGNAL_MODES
from mf_pipeline.lib.settings import Settings

EQUITY_MODES = ("event_returns_only", "daily_equity_curve", "daily_mark_to_market")
POLICY_FILTER_MODES = ("allow_only", "allow_watch", "all_states")
JOIN_KEYS_ALLOWED = ("ticker", "trade_date", "trade_dt", "timeframe")


@dataclass(frozen=True)
class BacktestOptions:
    """Strategy, overlay and execution-realism parameters (backtest_ops.md §0, §1, §6, §7)."""

    signal_mode: str = "state_transition_entry"
    exit_mode: str = "horizon_or_state"
    hold_bars: int = 10
    allow_unconfirmed: bool = False
    include_watch: bool = False
    policy_filter_mode: str = "allow_only"
    include_state_ids: tuple[int, ...] = ()
    fee_bps_per_side: float = 0.0
    slippage_bps_per_side: float = 0.0
    equity_mode: str = "event_returns_only"
    capital_base: float = 1.0
    overlay_mode: str = "none"
    overlay_join_keys: tuple[str, ...] = ("ticker", "trade_date")
    overlay_coverage_mode: str = "warn_only"
    overlay_coverage_bypass: bool = False
    overlay_unknown_handling: str = "treat_unknown_as_pass"
    overlay_min_match_rate_warn: float = 0.80
    overlay_min_match_rate_fail: float = 0.60
    overlay_min_year_match_rate_warn: float = 0.70
    overlay_min_year_match_rate_fail: float = 0.50
    overlay_unknown_rate_warn: float = 0.25
    overlay_unknown_rate_fail: float = 0.50
    exec_profile: str = "none"
    exec_min_price: float | None = None
    exec_min_dollar_vol20: float | None = None
    exec_max_vol_pct: float | None = None
    exec_min_history_bars: int | None = None
    report_min_trades: int = 30
    report_max_zero_trade_share: float = 0.5
    report_max_ret_cv: float = 20.0
    export_joined_rows: bool = False

    def payload(self) -> dict[str, Any]:
        return asdict(self)

    def check(self) -> None:
        """Refuse values the old CLI refuses, naming the option."""
        choices = {"signal_mode": SIGNAL_MODES, "exit_mode": EXIT_MODES,
                   "equity_mode": EQUITY_MODES, "policy_filter_mode": POLICY_FILTER_MODES,
                   "overlay_coverage_mode": ("warn_only", "strict_fail"),
                   "overlay_unknown_handling": ("treat_unknown_as_pass",
                                                "treat_unknown_as_block"),
                   "overlay_mode": ("none", "allow_only", "allow_watch", "allow_or_unknown",
                                    "block_veto")}  # fmt: skip
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"--{name.replace('_', '-')} must be one of "
                                 f"{', '.join(allowed)}; got {getattr(self, name)!r}")
        if self.hold_bars < 1:
            raise ValueError(f"--hold-bars must be >= 1, got {self.hold_bars}")
        bad = [k for k in self.overlay_join_keys if k not in JOIN_KEYS_ALLOWED]
        if bad:
            raise ValueError(f"--overlay-join-keys: {bad} not allowed "
                             f"(use {', '.join(JOIN_KEYS_ALLOWED)})")


def backtest_options(settings: Settings, **overrides: Any) -> BacktestOptions:
    """Settings defaults with the non-None ``overrides`` (names of :class:`BacktestOptions`)."""
    b, o, c = settings.backtest, settings.backtest_policy_overlay, settings.overlay_coverage_policy
    e = settings.backtest_execution_realism
    base = BacktestOptions(
        signal_mode=b.signal_mode, exit_mode=b.exit_mode, hold_bars=b.hold_bars,
        allow_unconfirmed=b.allow_unconfirmed,
        include_watch=b.cluster_policy.include_watch_default,
        fee_bps_per_side=b.fee_bps_per_side, slippage_bps_per_side=b.slippage_bps_per_side,
        equity_mode=b.equity_mode, capital_base=b.capital_base,
        overlay_mode=o.default_overlay_mode, overlay_join_keys=tuple(o.join_keys),
        overlay_coverage_mode=c.coverage_mode, overlay_unknown_handling=c.unknown_handling,
        overlay_min_match_rate_warn=c.min_match_rate_warn,
        overlay_min_match_rate_fail=c.min_match_rate_fail,
        overlay_min_year_match_rate_warn=c.min_year_match_rate_warn,
        overlay_min_year_match_rate_fail=c.min_year_match_rate_fail,
        overlay_unknown_rate_warn=c.unknown_rate_warn,
        overlay_unknown_rate_fail=c.unknown_rate_fail,
        exec_profile=e.default_profile, report_min_trades=e.report_min_trades_default,
        report_max_zero_trade_share=e.report_max_zero_trade_share_default,
        report_max_ret_cv=e.report_max_ret_cv_default,
    )  # fmt: skip
    known = {f.name for f in fields(BacktestOptions)}
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"unknown backtest options: {sorted(unknown)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    for key in ("include_state_ids", "overlay_join_keys"):
        if key in given:
            given[key] = tuple(given[key])
    options = replace(base, **given)
    options.check()
    return options
