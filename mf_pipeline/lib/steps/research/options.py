"""Split keys, preprocessing options and the settings-based model configs.

Partition keys (``wf<train_end>`` / ``full``) and their splits; ``PrepOptions`` and
their validation (``check_options``); the ``research_clustering``/``research_hmm``
defaults for preprocessing, clustering and the HMM.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import Any

from mf_pipeline.lib.research import clustering as cl
from mf_pipeline.lib.research import hmm as hm
from mf_pipeline.lib.research.features import DEFAULT_FEATURES
from mf_pipeline.lib.research.splits import (
    DEFAULT_EMBARGO_BARS,
    DEFAULT_TRAIN_ENDS,
    FULL_SPLIT_ID,
    Split,
    split_from_id,
)
from mf_pipeline.lib.settings import Settings

WF_PREFIX = "wf"
FIT_ON_CHOICES = ("train", "all")
PREDICT_ON_CHOICES = {"cluster": ("test", "all"), "hmm": ("train", "test", "all")}


def split_keys(settings: Settings) -> list[str]:
    """The default split keys: ``wf<train_end>`` per configured train end, then ``full``."""
    ends = list(settings.validation_walkforward.train_end_list_default) or list(DEFAULT_TRAIN_ENDS)
    isos = sorted({str(end)[:10] for end in ends})
    return [f"{WF_PREFIX}{d}" for d in isos] + [FULL_SPLIT_ID]


def split_of(key: str, embargo_bars: int = DEFAULT_EMBARGO_BARS) -> Split:
    """Split for a partition key (``wf2016-12-31``), a bare ISO train end, or ``full``."""
    key = key.strip()
    if key == FULL_SPLIT_ID:
        return split_from_id(FULL_SPLIT_ID)
    return split_from_id(key.removeprefix(WF_PREFIX), embargo_bars)


def split_key(split_or_train_end: str | None) -> str:
    """Normalise ``--split``/``--train-end`` input to a partition key."""
    if not split_or_train_end:
        return FULL_SPLIT_ID
    value = split_or_train_end.strip()
    if value == FULL_SPLIT_ID or value.startswith(WF_PREFIX):
        return value
    return f"{WF_PREFIX}{dt.date.fromisoformat(value).isoformat()}"


@dataclass(frozen=True)
class PrepOptions:
    """Preprocessing knobs shared by clustering and HMM (defaults: settings)."""

    scaler: str = "standard"
    scaling_scope: str = "global"
    clip_zscore: float | None = 8.0
    unseen_policy: str = "drop"
    features: tuple[str, ...] = DEFAULT_FEATURES
    forward_windows: tuple[int, ...] = (5, 10, 20)
    embargo_bars: int = DEFAULT_EMBARGO_BARS
    date_from: str | None = None
    date_to: str | None = None
    test_start: str | None = None
    """Time split: first test date wanted; the embargo may push the effective start later."""
    test_end: str | None = None
    """Time split: last test date; bounds the test rows and the prices their labels read."""
    fit_on: str | None = None
    """train | all (default train; forced to all for the in-sample split)."""
    predict_on: str | None = None
    """test | all (clustering) or train | test | all (HMM); default test (all in-sample)."""
    sample_frac: float | None = None
    """Seeded uniform row sample of the loaded dataset, in (0, 1]."""
    sample_seed: int = 42
    kind: str = "cluster"

    def filters(self) -> dict[str, Any]:
        """The row filters and split options as given (recorded in run summaries)."""
        return {"date_from": self.date_from, "date_to": self.date_to,
                "sample_frac": self.sample_frac,
                "sample_seed": self.sample_seed if self.sample_frac is not None else None,
                "test_start": self.test_start, "test_end": self.test_end,
                "fit_on": self.fit_on, "predict_on": self.predict_on,
                "embargo_bars": self.embargo_bars}  # fmt: skip


def iso_date(value: str | None, option: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError:
        raise ValueError(f"{option} must be a YYYY-MM-DD date, got {value!r}") from None


def check_options(options: PrepOptions, in_sample: bool) -> tuple[str, str]:
    """Validate the split/sample options; return the effective ``(fit_on, predict_on)``."""
    if options.sample_frac is not None and not 0 < options.sample_frac <= 1:
        raise ValueError(f"--sample-frac must be in (0, 1], got {options.sample_frac}")
    fit_on = (options.fit_on or "train").strip().lower()
    predict_on = (options.predict_on or "test").strip().lower()
    if fit_on not in FIT_ON_CHOICES:
        raise ValueError(f"--fit-on must be one of {'/'.join(FIT_ON_CHOICES)}, got {fit_on!r}")
    allowed = PREDICT_ON_CHOICES.get(options.kind, PREDICT_ON_CHOICES["cluster"])
    if predict_on not in allowed:
        raise ValueError(f"--predict-on must be one of {'/'.join(allowed)}, got {predict_on!r}")
    start = iso_date(options.test_start, "--test-start")
    end = iso_date(options.test_end, "--test-end")
    for name, value in (("--date-from", options.date_from), ("--date-to", options.date_to)):
        iso_date(value, name)
    if start and end and end < start:
        raise ValueError(f"--test-end {end} is before --test-start {start}")
    if in_sample:
        if start or end:
            raise ValueError("--test-start/--test-end need a time split (--split-mode time "
                             "--train-end ...)")
        return "all", "all"
    return fit_on, predict_on


def prep_options(settings: Settings, kind: str = "cluster", **overrides: Any) -> PrepOptions:
    """Settings defaults (``research_clustering`` / ``research_hmm``) with non-None overrides.

    Clipping and forward windows come from ``research_clustering`` for both kinds; the scaler
    and scaling scope from the kind's own group; HMM features from
    ``research_hmm.default_feature_list`` when set, else the clustering features.
    """
    rc, rh = settings.research_clustering, settings.research_hmm
    own = rh if kind == "hmm" else rc
    features = tuple(rc.feature_list or DEFAULT_FEATURES)
    if kind == "hmm" and rh.default_feature_list:
        features = tuple(rh.default_feature_list)
    opts = PrepOptions(
        scaler=own.scaler,
        scaling_scope=own.scaling_scope_default,
        clip_zscore=rc.clip_zscore,
        features=features,
        forward_windows=tuple(rc.forward_windows),
        kind=kind,
    )
    return replace(opts, **{k: v for k, v in overrides.items() if v is not None})


def cluster_config(settings: Settings, **overrides: Any) -> cl.ClusterConfig:
    """``ClusterConfig`` from ``research_clustering`` with non-None overrides."""
    rc = settings.research_clustering
    base = cl.ClusterConfig(
        random_state=rc.random_state,
        fit_procedure=rc.fit_procedure,
        silhouette_sample_max=rc.silhouette_sample_max,
        kmeans_n_init=rc.kmeans.n_init,
        kmeans_max_iter=rc.kmeans.max_iter,
        gmm_covariance_type=rc.gmm.covariance_type,
        gmm_reg_covar=rc.gmm.reg_covar,
        gmm_max_iter=rc.gmm.max_iter,
    )
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})


def hmm_config(settings: Settings, **overrides: Any) -> hm.HmmConfig:
    """``HmmConfig`` from ``research_hmm.hmm`` with non-None overrides.

    The absolute ``tol``: the override when given (either procedure); else ``hmm.tol`` for the
    ``spec`` procedure, while ``fast`` keeps ``tol=None`` and stops on ``hmm.tol_per_row``.
    """
    h = settings.research_hmm.hmm
    base = hm.HmmConfig(
        n_components=h.n_components_default,
        covariance_type=h.covariance_type,
        n_iter=h.n_iter,
        fit_procedure=h.fit_procedure,
        tol_per_row=h.tol_per_row,
        random_state=h.random_state,
    )
    config = replace(base, **{k: v for k, v in overrides.items() if v is not None})
    if config.tol is None and config.fit_procedure == "spec":
        config = replace(config, tol=h.tol)
    return config


def min_sequence_length(settings: Settings) -> int:
    return settings.research_hmm.min_sequence_length
