"""Typed settings: YAML defaults overlaid by ``MF_PIPELINE_*`` environment variables.

Precedence, highest first: explicit arguments, environment (``MF_PIPELINE_<GROUP>__<KEY>``),
a ``.env`` file in the working directory, the YAML file, built-in defaults. The YAML file is
``$MF_PIPELINE_SETTINGS_FILE`` or ``configs/settings.yaml`` of the project root (the first folder
upward from the working directory holding one). Relative paths resolve against the project root,
so commands behave the same from any sub-folder.
"""

from __future__ import annotations

import datetime as dt
import os
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

ENV_PREFIX = "MF_PIPELINE_"
SETTINGS_FILE_ENV = "MF_PIPELINE_SETTINGS_FILE"
DEFAULT_SETTINGS_RELPATH = Path("configs") / "settings.yaml"


class SettingsError(ValueError):
    """A settings value is invalid; the message names the key and the offending value."""


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ProjectSettings(_Group):
    name: str = "mf_pipeline"
    env: str = "dev"


class PathSettings(_Group):
    raw_root: Path | None = None
    data_root: Path = Path("./data")
    bronze_root: Path | None = None
    silver_root: Path | None = None
    gold_root: Path | None = None
    artifacts_root: Path = Path("./artifacts")
    logs_root: Path = Path("./logs")


FloatName = Literal["float64", "float32"]


class PrecisionSettings(_Group):
    bronze_float: Literal["float64"] = "float64"
    silver_float: FloatName = "float32"
    gold_float: FloatName = "float32"


class ParquetSettings(_Group):
    compression: Literal["zstd", "snappy", "gzip", "brotli", "lz4", "none"] = "zstd"
    compression_level: int | None = 3
    statistics: bool = True


class IngestSettings(_Group):
    """What one raw file may be and cost (hostile input, docs/BRONZE.md)."""

    follow_symlinks: Literal["none", "inside_root"] = "none"
    max_line_bytes: int = Field(4096, ge=128)
    max_file_bytes: int = Field(256 * 2**20, ge=1)


class BootstrapSettings(_Group):
    """State-outcome bootstrap. ``mode``: block (dates in contiguous stationary blocks, ours),
    circular (circular date blocks) or iid (rows independent, the old default: too narrow)."""

    n_boot: int = Field(1000, ge=10)
    ci: float = Field(0.95, gt=0, lt=1)
    mode: Literal["block", "circular", "iid"] = "block"
    block_length: int | None = Field(None, ge=1)
    """Dates per block; null: Politis-White, at least the longest forward horizon."""
    random_state: int = 42
    alpha: float = Field(0.05, gt=0, lt=1)
    """Family-wise error rate of the Holm-corrected edge and pairwise tests."""
    max_points_per_state: int = Field(50_000, ge=100)


class EventStudySettings(_Group):
    window_pre: int = Field(10, ge=0)
    window_post: int = Field(20, ge=1)
    min_events_per_transition: int = Field(50, ge=1)
    max_gap_days: int = Field(7, ge=1)
    """No transition event across (and no event window through) a longer calendar gap."""


class RollingStabilitySettings(_Group):
    window_months: int = Field(12, ge=1)
    step_months: int = Field(3, ge=1)


class ScorecardSettings(_Group):
    eps: float = Field(1e-12, gt=0)
    weights: dict[str, float] = Field(default_factory=lambda: {
        "sample_size": 0.2, "ci_width": 0.25, "sign_confidence": 0.2, "stability": 0.25,
        "separation": 0.1})


class ValidationIoSettings(_Group):
    write_large_artifacts_default: bool = False


class ValidationSettings(_Group):
    suspicious_range_pct_threshold: float = Field(0.5, gt=0)
    suspicious_return_pct_threshold: float = Field(0.3, gt=0)
    gap_days_warn_threshold: int = Field(7, ge=1)
    # Statistical-validation keys share this group in the old settings (docs/VALIDATION.md).
    bootstrap: BootstrapSettings = Field(default_factory=lambda: BootstrapSettings())
    event_study: EventStudySettings = Field(default_factory=lambda: EventStudySettings())
    rolling_stability: RollingStabilitySettings = Field(
        default_factory=lambda: RollingStabilitySettings())
    scorecard: ScorecardSettings = Field(default_factory=lambda: ScorecardSettings())
    io: ValidationIoSettings = Field(default_factory=lambda: ValidationIoSettings())


class IndicatorSettings(_Group):
    tmf_period: int = Field(21, ge=1)
    proxy_period: int = Field(21, ge=1)
    eps: float = Field(1e-12, gt=0)
    float_dtype_override: FloatName | None = None


class EventGrammarSettings(_Group):
    pivot_mode: Literal["3bar"] = "3bar"
    # The old name says "lookahead" but it is a look-back window; the name is kept for
    # compatibility with existing settings files.
    respect_fail_lookahead_bars: int = Field(10, ge=1)
    hold_consecutive_bars: int = Field(5, ge=1)
    tmf_burst_abs_threshold: float = Field(0.15, ge=0)
    tmf_burst_slope_threshold: float = Field(0.05, ge=0)
    activity_windows: list[int] = Field(default_factory=lambda: [5, 20], min_length=1)
    eps: float = Field(1e-12, gt=0)


class ScoreWeights(_Group):
    zero: float = 1.0
    respect: float = 2.0
    burst: float = 2.0
    hold: float = 1.5


class ExportSettings(_Group):
    default_drop_null_key_features: bool = True


class GoldFeatureSettings(_Group):
    eps: float = Field(1e-12, gt=0)
    activity_windows: list[int] = Field(default_factory=lambda: [5, 20], min_length=1)
    score_weights: ScoreWeights = Field(default_factory=ScoreWeights)
    recency_clip_bars: int = Field(20, ge=1)
    float_dtype_override: FloatName | None = None
    export: ExportSettings = Field(default_factory=ExportSettings)


class SampleSettings(_Group):
    """The generated universe used when ``paths.raw_root`` is unset."""

    tickers: int = Field(60, ge=1)
    years: float = Field(8.0, gt=0)
    seed: int = 7
    messy: bool = True
    null: bool = False
    """No regimes (driftless random walks): a universe where no method should find an edge."""


# ---------------------------------------------------------------- research (docs/RESEARCH.md)

Scaler = Literal["standard", "robust"]
ScalingScope = Literal["global", "per_ticker"]
SplitMode = Literal["none", "time"]
CovarianceType = Literal["diag", "full", "tied", "spherical"]
FitProcedure = Literal["fast", "spec"]
"""``fast``: our bounded-sample fits; ``spec``: the old tool's fits on every row
(docs/RESEARCH.md, "Fitting procedure")."""


class KMeansSettings(_Group):
    n_init: int = Field(20, ge=1)
    max_iter: int = Field(300, ge=1)


class GmmSettings(_Group):
    covariance_type: CovarianceType = "diag"
    reg_covar: float = Field(1e-6, ge=0)
    max_iter: int = Field(200, ge=1)


class ClusterStabilitySettings(_Group):
    """Default seeds of ``research-cluster-stability`` (a run's own ``--seeds`` wins)."""

    seeds: int = Field(10, ge=1)
    seed_start: int = Field(42, ge=0)


class HmmStabilitySettings(ClusterStabilitySettings):
    """Default seeds of ``research-hmm-stability`` (a run's own ``--seeds`` wins)."""

    seeds: int = Field(5, ge=1)


class ResearchClusteringSettings(_Group):
    """Defaults of the clustering runs (``mf research-cluster-*``, ``cluster_model``)."""

    feature_list: list[str] = Field(default_factory=list)
    """Model features; empty: ``research.features.DEFAULT_FEATURES`` (the YAML's list)."""
    scaler: Scaler = "standard"
    scaling_scope_default: ScalingScope = "global"
    split_mode_default: SplitMode = "none"
    """Kept from the old settings; not read (without ``--split``/``--split-mode``: ``full``)."""
    stability: ClusterStabilitySettings = Field(default_factory=ClusterStabilitySettings)
    clip_zscore: float | None = 8.0
    """Clip scaled features to +-this; null or <= 0: no clipping. Also used by HMM runs."""
    silhouette_sample_max: int = Field(20_000, ge=1)
    random_state: int = Field(42, ge=0)
    fit_procedure: FitProcedure = "fast"
    """``fast``: KMeans restarts on a 50,000-row sample, HDBSCAN on 20,000 rows; ``spec``: both
    on all fit rows (HDBSCAN's cost then grows with the square of the rows)."""
    kmeans: KMeansSettings = Field(default_factory=KMeansSettings)
    gmm: GmmSettings = Field(default_factory=GmmSettings)
    forward_windows: list[PositiveInt] = Field(default_factory=lambda: [5, 10, 20], min_length=1)
    """Forward-return label windows in bars (also used by HMM runs)."""


class HmmModelSettings(_Group):
    n_components_default: int = Field(5, ge=1)
    covariance_type: CovarianceType = "diag"
    n_iter: int = Field(200, ge=1)
    fit_procedure: FitProcedure = "fast"
    """``fast``: EM on <= 300,000 rows of whole tickers from a KMeans start, stopping on a
    per-row gain (``tol_per_row``); ``spec``: hmmlearn's own start and EM on all fit rows."""
    tol: float = Field(1e-3, gt=0)
    """Absolute hmmlearn tolerance on the gain of the TOTAL log-likelihood per EM iteration,
    used by the ``spec`` procedure (a run's ``--tol`` wins, in either procedure)."""
    tol_per_row: float = Field(1e-5, gt=0)
    """``fast`` without ``--tol``: stop when an iteration gains less than this per EM row."""
    random_state: int = Field(42, ge=0)


class HmmSweepSettings(_Group):
    components: list[PositiveInt] = Field(default_factory=lambda: [4, 5, 6, 8], min_length=1)
    """State counts of ``research-hmm-sweep`` when ``--components`` is not given."""


class ResearchHmmSettings(_Group):
    """Defaults of the Gaussian-HMM runs (``mf research-hmm-*``, ``hmm_model``)."""

    default_feature_list: list[str] = Field(
        default_factory=lambda: ["tmf_21", "tti_proxy_v1_21", "tmf_abs", "atr_pct_14",
                                 "tmf_slope_10", "tti_proxy_slope_5"]  # fmt: skip
    )
    """Model features; empty: ``research_clustering.feature_list``. The default keeps only
    continuous, causal features: counts and run lengths (``rec_*``, ``state_run_length``)
    give the Gaussian emissions spiky densities that swamp the rest (docs/RESEARCH.md,
    "Regime recovery")."""
    scaler: Scaler = "standard"
    scaling_scope_default: ScalingScope = "global"
    split_mode_default: SplitMode = "none"
    """Kept from the old settings; not read (without ``--split``/``--split-mode``: ``full``)."""
    min_sequence_length: int = Field(100, ge=1)
    hmm: HmmModelSettings = Field(default_factory=HmmModelSettings)
    sweep: HmmSweepSettings = Field(default_factory=HmmSweepSettings)
    stability: HmmStabilitySettings = Field(default_factory=HmmStabilitySettings)


class ClusterQaSettings(_Group):
    """Thresholds of the per-state QA flags (lib/validation/qa.py)."""

    ret_cv_threshold: float = Field(5.0, gt=0)
    min_n_rows: int = Field(200, ge=1)
    min_state_share: float = Field(0.03, ge=0, le=1)
    sign_consistency_threshold: float = Field(0.55, ge=0, le=1)
    ci_width_quantile_threshold: float = Field(0.8, ge=0, le=1)
    eps: float = Field(1e-12, gt=0)
    ci_width_max: float = Field(0.04, gt=0)
    """WIDE_CI: an absolute width of the fwd_ret_10 mean's CI (the old relative quantile is
    still reported)."""


class HardeningWeights(_Group):
    sample_size: float = Field(0.15, ge=0)
    occupancy: float = Field(0.15, ge=0)
    sign_confidence: float = Field(0.20, ge=0)
    ci_width: float = Field(0.15, ge=0)
    sign_consistency: float = Field(0.15, ge=0)
    ret_cv: float = Field(0.10, ge=0)
    confidence_score: float = Field(0.10, ge=0)


def _default_penalties() -> dict[str, float]:
    return {"LOW_N": 20, "LOW_OCCUPANCY": 20, "MEAN_NEAR_ZERO_CV_INFLATION": 15, "WIDE_CI": 15,
            "SIGN_FLIP_ACROSS_WINDOWS": 20, "WINDOW_DRIFT_HIGH": 15, "LIKELY_OUTLIER_WINDOW": 10,
            "TRANSITIONS_TOO_SPARSE": 10}  # fmt: skip


class ClusterHardeningSettings(_Group):
    """Hard limits, score cut-offs and penalties of state hardening (lib/validation/policy.py).
    ``penalties``: score points per reason code."""

    min_n_rows_hard: int = Field(200, ge=1)
    min_state_share_hard: float = Field(0.03, ge=0, le=1)
    ret_cv_hard: float = Field(6.0, gt=0)
    sign_consistency_hard: float = Field(0.55, ge=0, le=1)
    ci_width_hard_quantile: float = Field(0.8, ge=0, le=1)
    score_min_allow: float = Field(70.0, ge=0, le=100)
    score_min_watch: float = Field(45.0, ge=0, le=100)
    eps: float = Field(1e-12, gt=0)
    ci_width_hard_max: float = Field(0.06, gt=0)
    """HARD_WIDE_CI: absolute width of the fwd_ret_10 mean's CI."""
    alpha: float = Field(0.05, gt=0, lt=1)
    """ALLOW needs the state's edge significant at this Holm-corrected level."""
    penalties: dict[str, float] = Field(default_factory=_default_penalties)
    weights: HardeningWeights = Field(default_factory=HardeningWeights)


SignalMode = Literal["state_entry", "state_transition_entry", "state_persistence_confirm"]
ExitMode = Literal["horizon", "state_exit", "horizon_or_state"]
EquityMode = Literal["event_returns_only", "daily_equity_curve", "daily_mark_to_market"]
OverlayMode = Literal["none", "allow_only", "allow_watch", "allow_or_unknown", "block_veto"]


class FlowMappingSettings(_Group):
    long_states: list[int] = Field(default_factory=lambda: [1, 2])
    short_states: list[int] = Field(default_factory=lambda: [3, 4])
    ignore_states: list[int] = Field(default_factory=lambda: [0])


class HmmDirectionSettings(_Group):
    source_priority: list[str] = Field(
        default_factory=lambda: ["state_map", "validation_scorecard", "profile"])
    """Echoed only: the order is state map, then a validation scorecard (as the old tool)."""
    min_abs_forward_mean_for_direction: float = Field(0.0, ge=0)


class ClusterPolicySettings(_Group):
    default_classes: list[str] = Field(default_factory=lambda: ["ALLOW"])
    include_watch_default: bool = False


class BacktestSettings(_Group):
    """Strategy defaults of ``mf backtest-run`` and the ``backtest_*`` assets."""

    signal_mode: SignalMode = "state_transition_entry"
    exit_mode: ExitMode = "horizon_or_state"
    hold_bars: int = Field(10, ge=1)
    allow_overlap: bool = False
    """Kept so old settings files load; true is refused (positions never overlap)."""
    allow_unconfirmed: bool = False
    equity_mode: EquityMode = "event_returns_only"
    fee_bps_per_side: float = Field(0.0, ge=0)
    slippage_bps_per_side: float = Field(0.0, ge=0)
    capital_base: float = Field(1.0, gt=0)
    flow_mapping: FlowMappingSettings = Field(default_factory=lambda: FlowMappingSettings())
    hmm_direction_inference: HmmDirectionSettings = Field(
        default_factory=lambda: HmmDirectionSettings())
    cluster_policy: ClusterPolicySettings = Field(default_factory=lambda: ClusterPolicySettings())
    nan_policy: dict[str, bool] = Field(default_factory=dict)
    """Echoed only: non-finite prices always make a trade invalid."""

    @model_validator(mode="after")
    def _no_overlap(self) -> BacktestSettings:
        if self.allow_overlap:
            raise ValueError("backtest.allow_overlap=true is not supported: positions never "
                             "overlap (the old option only hid the skipped_due_overlap count)")
        return self


class OverlaySettings(_Group):
    default_overlay_mode: OverlayMode = "none"
    join_keys: list[str] = Field(default_factory=lambda: ["ticker", "trade_date"])
    allow_unknown_for_block_veto: bool = True
    min_overlay_match_rate_warn: float = Field(0.80, ge=0, le=1)
    dedupe_rule: Literal["first"] = "first"
    enable_direction_conflict_metrics: bool = True


class CoverageSettings(_Group):
    coverage_mode: Literal["warn_only", "strict_fail"] = "warn_only"
    min_match_rate_warn: float = Field(0.80, ge=0, le=1)
    min_match_rate_fail: float = Field(0.60, ge=0, le=1)
    min_year_match_rate_warn: float = Field(0.70, ge=0, le=1)
    min_year_match_rate_fail: float = Field(0.50, ge=0, le=1)
    unknown_rate_warn: float = Field(0.25, ge=0, le=1)
    unknown_rate_fail: float = Field(0.50, ge=0, le=1)
    unknown_handling: Literal["treat_unknown_as_pass", "treat_unknown_as_block"] = (
        "treat_unknown_as_pass")


class ExecutionProfileSettings(_Group):
    min_price: float | None = None
    min_dollar_vol_20: float | None = None
    max_vol_pct: float | None = None
    min_history_bars_for_execution: int | None = None


def _default_profiles() -> dict[str, ExecutionProfileSettings]:
    return {
        "none": ExecutionProfileSettings(),
        "lite": ExecutionProfileSettings(min_price=2.0, min_dollar_vol_20=1_000_000,
                                         max_vol_pct=0.12, min_history_bars_for_execution=50),
        "strict": ExecutionProfileSettings(min_price=5.0, min_dollar_vol_20=5_000_000,
                                           max_vol_pct=0.08, min_history_bars_for_execution=100),
    }  # fmt: skip


class ExecutionRealismSettings(_Group):
    default_profile: str = "none"
    profiles: dict[str, ExecutionProfileSettings] = Field(default_factory=_default_profiles)
    dollar_vol_window: int = Field(20, ge=1)
    dollar_vol_rolling_method: Literal["median", "mean"] = "median"
    vol_input_unit_mode: Literal["auto", "decimal", "percent_points"] = "auto"
    min_history_bars_default: int = Field(50, ge=0)
    report_min_trades_default: int = Field(30, ge=0)
    report_max_zero_trade_share_default: float = Field(0.50, ge=0, le=1)
    report_max_ret_cv_default: float = Field(20.0, gt=0)


class CalibrationSweepSettings(_Group):
    min_price: list[float] = Field(default_factory=lambda: [0.0, 1.0, 2.0, 5.0])
    min_dollar_vol20: list[float] = Field(
        default_factory=lambda: [0.0, 250_000.0, 500_000.0, 1_000_000.0, 2_000_000.0])
    max_vol_pct: list[float | None] = Field(
        default_factory=lambda: [None, 5.0, 8.0, 10.0, 15.0, 20.0, 30.0])
    """Volatility caps; ``null`` = no cap, values > 1 are percent points (5 = 5 %)."""
    min_history_bars: list[int] = Field(default_factory=lambda: [20, 50])


class CalibrationSettings(_Group):
    """``execution-realism-calibrate`` (backtest_ops.md §7.7)."""

    sweep: CalibrationSweepSettings = Field(default_factory=CalibrationSweepSettings)
    target_lite_eligibility_min: float = Field(0.20, ge=0, le=1)
    target_lite_eligibility_max: float = Field(0.60, ge=0, le=1)
    target_strict_eligibility_min: float = Field(0.05, ge=0, le=1)
    target_strict_eligibility_max: float = Field(0.30, ge=0, le=1)
    min_eligible_signals: int = Field(100, ge=0)
    max_single_reason_share: float = Field(0.95, ge=0, le=1)
    top_k_recommendations: int = Field(5, ge=1)
    by_year_default: bool = True
    """By-year distributions unless ``--no-by-year`` (the flag now wins, fault 28)."""


class DefaultGridSettings(_Group):
    hold_bars: list[int] = Field(default_factory=lambda: [5, 10, 15, 20])
    signal_mode: list[str] = Field(default_factory=lambda: ["state_transition_entry"])
    exit_mode: list[str] = Field(default_factory=lambda: ["horizon_or_state"])
    fee_bps_per_side: list[float] = Field(default_factory=lambda: [0.0, 5.0, 10.0])
    slippage_bps_per_side: list[float] = Field(default_factory=lambda: [0.0])
    allow_overlap: list[bool] = Field(default_factory=lambda: [False])
    equity_mode: list[str] = Field(default_factory=lambda: ["event_returns_only"])
    include_watch: list[bool] = Field(default_factory=lambda: [False])
    include_state_sets: list[list[int]] = Field(default_factory=lambda: [[]])


class RobustnessWeights(_Group):
    expectancy_rank: float = 0.30
    profit_factor_rank: float = 0.20
    drawdown_score: float = 0.20
    consistency: float = 0.15
    cost_robustness: float = 0.10
    hygiene: float = 0.05


class SensitivitySettings(_Group):
    """Sensitivity grids (backtest_ops.md §5)."""

    progress_every: int = Field(10, ge=1)
    max_combos: int = Field(500, ge=1)
    stop_on_error: bool = False
    policy_filter_mode_default: Literal["allow_only", "allow_watch", "all_states"] = "allow_only"
    include_ret_cv_default: bool = True
    include_tail_metrics_default: bool = True
    report_top_n_default: int = Field(10, ge=1)
    min_successful_splits_default: int = Field(1, ge=0)
    default_grid: DefaultGridSettings = Field(default_factory=DefaultGridSettings)
    ranking_metric_default: str = "expectancy"
    robustness_score_weights: RobustnessWeights = Field(default_factory=RobustnessWeights)
    pbo_splits: int = Field(16, ge=2)
    """CSCV blocks for the Probability of Backtest Overfitting (even; 16 as in the paper)."""


class CandidateDriftSettings(_Group):
    """Drift flags of a candidate re-run (backtest_ops.md §10.2, §10.3)."""

    expectancy_drop_pct_flag: float = Field(0.30, ge=0)
    pf_drop_pct_flag: float = Field(0.25, ge=0)
    robustness_drop_points_flag: float = Field(10.0, ge=0)
    ret_cv_increase_pct_flag: float = Field(0.50, ge=0)
    trade_count_drop_pct_flag: float = Field(0.40, ge=0)
    exec_eligibility_drop_pct_flag: float = Field(0.20, ge=0)
    overlay_match_rate_min: float = Field(0.80, ge=0, le=1)
    coverage_drift_warn_drop_abs: float = Field(0.10, ge=0, le=1)
    coverage_drift_fail_match_rate: float = Field(0.60, ge=0, le=1)
    coverage_unknown_increase_warn_abs: float = Field(0.15, ge=0, le=1)
    coverage_unknown_rate_fail: float = Field(0.50, ge=0, le=1)


class CandidateMicroGridSettings(_Group):
    """The optional micro-grid around a locked candidate (§10.1 step 7)."""

    enabled_default: bool = False
    hold_bars_offsets: list[int] = Field(default_factory=lambda: [-5, 0, 10])
    fee_bps_offsets: list[float] = Field(default_factory=lambda: [0.0, 10.0])
    max_combos: int = Field(9, ge=1)


class CandidateRerunSettings(_Group):
    """Nightly re-runs of locked candidates (backtest_ops.md §10)."""

    drift: CandidateDriftSettings = Field(default_factory=CandidateDriftSettings)
    micro_grid: CandidateMicroGridSettings = Field(default_factory=CandidateMicroGridSettings)
    wf_run_enable_default: bool = False
    """Read by nothing, as in the old tool (fault 17): the walk-forward check runs when a
    walk-forward grid folder is given (``RerunOptions.wf_grid_dir``)."""
    eps: float = Field(1.0e-12, gt=0)


class OpsNightlySettings(_Group):
    """Nightly operations (backtest_ops.md §11): the schedule, the ledger, the ops folders."""

    default_ledger_path: str = "ops_ledger/ops_ledger.csv"
    """Relative to the artifacts root (an absolute path is used as is); ``.parquet`` or ``.csv``."""
    keep_last_n: int = Field(30, ge=1)
    """Ops run folders kept under ``<artifacts_root>/ops_runs`` (newest by ``finished_ts``)."""
    default_coverage_mode: Literal["warn_only", "strict_fail"] = "warn_only"
    default_wf_enabled: bool = True
    """Run the walk-forward check of the candidates when a WF run folder is given."""
    default_timer_on_calendar: str = "07:30"
    """systemd ``OnCalendar`` of the timer; a bare HH:MM = weekdays at that time in ``timezone``."""
    cron: str = "30 7 * * 1-5"
    """The Dagster schedule: weekdays at 07:30, after the US close and the overnight data drop."""
    timezone: str = "America/New_York"


class ValidationWalkforwardSettings(BaseModel):
    model_config = ConfigDict(extra="allow")
    hmm_components: int = Field(5, ge=2)
    cluster_method: Literal["gmm", "kmeans"] = "gmm"
    cluster_k: int = Field(5, ge=2)
    scaling_scope: Literal["global", "per_ticker"] = "per_ticker"
    continue_on_error: bool = True
    non_overlapping_test: bool = True
    """Each split is judged on its own test window, up to the next train end (the old
    expanding test sets overlap, so their results are not independent)."""
    train_end_list_default: list[dt.date] = Field(
        default_factory=lambda: [
            dt.date(2012, 12, 31),
            dt.date(2014, 12, 31),
            dt.date(2016, 12, 31),
            dt.date(2018, 12, 31),
            dt.date(2020, 12, 31),
        ]
    )


class CelerySettings(_Group):
    """Where the Celery workers listen (docs/DEPLOY.md): every worker and the launching
    process must name the same broker and result backend."""

    broker: str = "redis://127.0.0.1:6379/0"
    backend: str = "redis://127.0.0.1:6379/1"
    queue: str = "dagster"
    worker_check_seconds: float = Field(default=5.0, gt=0)
    """How often a run asks a worker running one of its steps whether it is still alive; a
    worker that stops answering (killed, host lost) fails the step instead of hanging the run."""


class ExecutionSettings(_Group):
    """How `mf` runs execute their steps: in the calling process (the single-machine default),
    or on Celery workers, with the per-ticker layers split into ``shard_runs`` concurrent runs
    of contiguous shard groups."""

    executor: Literal["in_process", "celery"] = "in_process"
    shard_runs: PositiveInt = 1
    celery: CelerySettings = Field(default_factory=CelerySettings)

    @model_validator(mode="after")
    def _parallel_needs_workers(self) -> ExecutionSettings:
        if self.shard_runs > 1 and self.executor != "celery":
            raise ValueError("execution.shard_runs > 1 needs execution.executor: celery (the "
                             "shard runs execute on Celery workers)")
        return self


class Settings(BaseSettings):
    """Every default of the platform; groups and keys follow the old tool's settings."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        case_sensitive=False,
        extra="ignore",
        env_file=".env",
        validate_default=True,
    )

    project: ProjectSettings = Field(default_factory=ProjectSettings)
    paths: PathSettings = Field(default_factory=PathSettings)
    precision: PrecisionSettings = Field(default_factory=PrecisionSettings)
    parquet: ParquetSettings = Field(default_factory=ParquetSettings)
    execution: ExecutionSettings = Field(default_factory=ExecutionSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    validation: ValidationSettings = Field(default_factory=ValidationSettings)
    indicators: IndicatorSettings = Field(default_factory=IndicatorSettings)
    event_grammar: EventGrammarSettings = Field(default_factory=EventGrammarSettings)
    gold_features: GoldFeatureSettings = Field(default_factory=GoldFeatureSettings)
    sample: SampleSettings = Field(default_factory=SampleSettings)
    validation_walkforward: ValidationWalkforwardSettings = Field(
        default_factory=ValidationWalkforwardSettings
    )
    research_clustering: ResearchClusteringSettings = Field(
        default_factory=ResearchClusteringSettings
    )
    research_hmm: ResearchHmmSettings = Field(default_factory=ResearchHmmSettings)
    cluster_qa: ClusterQaSettings = Field(default_factory=ClusterQaSettings)
    cluster_hardening: ClusterHardeningSettings = Field(default_factory=ClusterHardeningSettings)
    # Groups of layers still to be built (research, validation, backtests, operations) are
    # loaded as plain mappings until those layers type them; their YAML defaults are kept.
    validation_harness: dict[str, Any] = Field(default_factory=dict)
    backtest: BacktestSettings = Field(default_factory=BacktestSettings)
    backtest_policy_overlay: OverlaySettings = Field(default_factory=OverlaySettings)
    overlay_coverage_policy: CoverageSettings = Field(default_factory=CoverageSettings)
    backtest_execution_realism: ExecutionRealismSettings = Field(
        default_factory=ExecutionRealismSettings)
    backtest_execution_calibration: CalibrationSettings = Field(
        default_factory=CalibrationSettings)
    backtest_sensitivity: SensitivitySettings = Field(default_factory=SensitivitySettings)
    candidate_rerun: CandidateRerunSettings = Field(default_factory=CandidateRerunSettings)
    ops_nightly: OpsNightlySettings = Field(default_factory=OpsNightlySettings)
    overlay_viewer: dict[str, Any] = Field(default_factory=dict)

    _yaml_file: ClassVar[Path | None] = None
    project_root: Path = Field(default=Path("."), exclude=True)
    settings_file: Path | None = Field(default=None, exclude=True)

    @field_validator("project_root", mode="after")
    @classmethod
    def _absolute_root(cls, value: Path) -> Path:
        return value.resolve()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, dotenv_settings]
        if cls._yaml_file is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=cls._yaml_file))
        return tuple(sources)

    def _resolve(self, path: Path) -> Path:
        return path if path.is_absolute() else (self.project_root / path).resolve()

    @cached_property
    def data_root(self) -> Path:
        return self._resolve(self.paths.data_root)

    @cached_property
    def bronze_root(self) -> Path:
        return self._resolve(self.paths.bronze_root or self.data_root / "bronze")

    @cached_property
    def silver_root(self) -> Path:
        return self._resolve(self.paths.silver_root or self.data_root / "silver")

    @cached_property
    def gold_root(self) -> Path:
        return self._resolve(self.paths.gold_root or self.data_root / "gold")

    @cached_property
    def artifacts_root(self) -> Path:
        return self._resolve(self.paths.artifacts_root)

    @cached_property
    def logs_root(self) -> Path:
        return self._resolve(self.paths.logs_root)

    @cached_property
    def sample_raw_root(self) -> Path:
        """Where the embedded sample universe lives when no raw root is configured."""
        return self.data_root / "sample_raw"

    @property
    def uses_sample(self) -> bool:
        return self.paths.raw_root is None

    @cached_property
    def raw_root(self) -> Path:
        if self.paths.raw_root is None:
            return self.sample_raw_root
        return self._resolve(self.paths.raw_root)

    def effective(self) -> dict[str, Any]:
        """The settings as plain data, with every path resolved (what ``mf show-config`` prints)."""
        data = self.model_dump(mode="json")
        data["paths"] = {
            "raw_root": str(self.raw_root),
            "raw_root_is_generated_sample": self.uses_sample,
            "data_root": str(self.data_root),
            "bronze_root": str(self.bronze_root),
            "silver_root": str(self.silver_root),
            "gold_root": str(self.gold_root),
            "artifacts_root": str(self.artifacts_root),
            "logs_root": str(self.logs_root),
        }
        data["settings_file"] = str(self.settings_file) if self.settings_file else None
        data["project_root"] = str(self.project_root)
        return data


def find_project_root(start: Path | None = None) -> Path:
    """First folder upward from ``start`` (default: the CWD) holding the settings file."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / DEFAULT_SETTINGS_RELPATH).is_file():
            return folder
    return here


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        env = ENV_PREFIX + "__".join(str(part).upper() for part in item["loc"])
        lines.append(f"invalid setting `{key}` = {item.get('input')!r}: {item['msg']} (env {env})")
    return "\n".join(lines)


def load_settings(settings_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Load the effective settings; raise :class:`SettingsError` naming any bad key and value.

    Parsing and validating cost tens of milliseconds and every asset of a run asks again, so
    the result is memoized on all it depends on: the file's path and bytes, the project root,
    ``.env`` in the working directory and the ``MF_PIPELINE_*`` variables. Each call gets its
    own deep copy, as when every call validated afresh.
    """
    chosen = settings_file or os.environ.get(SETTINGS_FILE_ENV)
    if chosen:
        path = Path(chosen).expanduser()
        if not path.is_absolute():
            path = (find_project_root() / path).resolve()
        if not path.is_file():
            raise SettingsError(f"settings file not found: {path}")
        # The folder above configs/ is the root, as in the old tool.
        root = path.parent.parent if path.parent.name == "configs" else path.parent
    else:
        root = find_project_root()
        path = root / DEFAULT_SETTINGS_RELPATH
        path = path if path.is_file() else None
    if overrides:
        return _validated(path, root, **overrides)
    env = tuple(sorted((k, v) for k, v in os.environ.items() if k.upper().startswith(ENV_PREFIX)))
    cached = _memoized(path, root, _bytes(path), _bytes(Path(".env")), env)
    return cached.model_copy(deep=True)


def _bytes(path: Path | None) -> bytes | None:
    return path.read_bytes() if path is not None and path.is_file() else None


@lru_cache(maxsize=16)
def _memoized(path: Path | None, root: Path, *inputs: object) -> Settings:
    """:func:`_validated`, keyed also on ``inputs``: what pydantic-settings reads by itself."""
    return _validated(path, root)


def _validated(path: Path | None, root: Path, **overrides: Any) -> Settings:
    Settings._yaml_file = path
    try:
        return Settings(project_root=root, settings_file=path, **overrides)
    except ValidationError as error:
        raise SettingsError(_describe(error)) from None
    finally:
        Settings._yaml_file = None
