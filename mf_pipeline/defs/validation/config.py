"""Typed run config of the validation assets and jobs: every ``mf validation-*``,
``cluster-qa-run`` and ``cluster-hardening-*`` option, once. ``None`` means the settings
default (``validation``, ``cluster_qa``, ``cluster_hardening``), so a run records exactly what
was given (:meth:`given`).
"""

from enum import Enum
from typing import Any

import dagster as dg

from mf_pipeline.lib.settings import Settings
from mf_pipeline.lib.steps.validation import policy as policy_step
from mf_pipeline.lib.steps.validation.options import ValidationOptions, validation_options

BootstrapMode = Enum("BootstrapMode", {v: v for v in ("block", "circular", "iid")}, type=str)
InputType = Enum("InputType", {v: v for v in ("auto", "hmm", "cluster", "flow", "generic")},
                 type=str)


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


class _Given(dg.Config):
    def given(self) -> dict[str, Any]:
        """The options that differ from the defaults (recorded in the run's metadata)."""
        return {k: _plain(v) for k, v in self.model_dump(exclude_defaults=True).items()}


class ValidationConfig(_Given):
    """Bootstrap, event study and rolling windows (research.md §6; docs/VALIDATION.md)."""

    bootstrap_n: int | None = None
    bootstrap_ci: float | None = None
    bootstrap_mode: BootstrapMode | None = None
    """block (dates in stationary blocks, default) | circular | iid (the old rows-iid)."""
    block_length: int | None = None
    """Dates per block (default: Politis-White, at least the longest horizon)."""
    alpha: float | None = None
    event_window_pre: int | None = None
    event_window_post: int | None = None
    min_events_per_transition: int | None = None
    max_gap_days: int | None = None
    window_months: int | None = None
    step_months: int | None = None
    write_large_artifacts: bool | None = None

    def options(self, settings: Settings) -> ValidationOptions:
        return validation_options(
            settings, n_boot=self.bootstrap_n, ci=self.bootstrap_ci,
            bootstrap_mode=_plain(self.bootstrap_mode), block_length=self.block_length,
            alpha=self.alpha, window_pre=self.event_window_pre,
            window_post=self.event_window_post,
            min_events_per_transition=self.min_events_per_transition,
            max_gap_days=self.max_gap_days, window_months=self.window_months,
            step_months=self.step_months, write_large_artifacts=self.write_large_artifacts)


class StateValidationConfig(ValidationConfig):
    non_overlapping_test: bool | None = None
    """Judge a walk-forward split only up to the next train end (default: settings, true)."""
    test_end: str | None = None
    """Last test date judged, YYYY-MM-DD (default: the next default train end when tests do
    not overlap; ``mf validation-wf-run`` passes the next train end of its own list)."""


class FileValidationConfig(ValidationConfig):
    """``mf validation-run --input-file``: any state-labelled Parquet/CSV (research.md §6.1)."""

    input_file: str
    input_type: InputType = InputType.auto
    state_col: str | None = None
    sample_frac: float | None = None
    """Share of TICKERS kept (whole histories, seeded), in (0, 1]."""
    date_from: str | None = None
    date_to: str | None = None


class QaConfig(_Given):
    ret_cv_threshold: float | None = None
    min_n_rows: int | None = None
    min_state_share: float | None = None
    ci_width_quantile_threshold: float | None = None
    sign_consistency_threshold: float | None = None
    ci_width_max: float | None = None

    def qa(self, settings: Settings) -> Any:
        return policy_step.qa_thresholds(settings, **self.model_dump())


class PolicyConfig(QaConfig):
    min_n_rows_hard: int | None = None
    min_state_share_hard: float | None = None
    ret_cv_hard: float | None = None
    sign_consistency_hard: float | None = None
    ci_width_hard_quantile: float | None = None
    ci_width_hard_max: float | None = None
    score_min_allow: float | None = None
    score_min_watch: float | None = None
    alpha: float | None = None
    export_filtered: bool = True
    """Write the state-labelled rows joined to their policy (exports/)."""
    force: bool = False
    """Recompute even when the folder holds a policy built with the same thresholds."""

    def thresholds(self, settings: Settings) -> Any:
        return policy_step.policy_thresholds(settings, **self.model_dump())


class FolderQaConfig(QaConfig):
    """``mf cluster-qa-run``: exactly one of the two folders."""

    validation_run_dir: str | None = None
    wf_run_dir: str | None = None


class FolderPolicyConfig(PolicyConfig):
    """``mf cluster-hardening-run``: exactly one of the two folders."""

    validation_run_dir: str | None = None
    wf_run_dir: str | None = None
    clustered_rows_file: str | None = None


class CompareConfig(dg.Config):
    run_dir_a: str
    run_dir_b: str


class HardeningCompareConfig(dg.Config):
    hardening_dir_a: str
    hardening_dir_b: str


class WfValidationConfig(PolicyConfig):
    """The walk-forward aggregate. ``mf validation-wf-run`` runs the splits' assets first and
    passes its folder (whose manifest lists each split's outcome); from the UI, without a
    folder, the aggregate covers the latest materializations of the default splits."""

    wf_run_dir: str | None = None
