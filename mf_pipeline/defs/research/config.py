"""Typed run config of the research assets: every ``mf research-*`` option, once.

The CLI passes its options here unchanged (same names), and the launchpad in the UI shows the
same fields with their choices. ``None`` means "the settings default" (``research_clustering``,
``research_hmm``), so a run records exactly what was given (:meth:`PrepConfig.given`).
"""

from enum import Enum
from typing import Any

import dagster as dg
import pydantic

from mf_pipeline.lib.research import clustering as cl
from mf_pipeline.lib.research import hmm as hm
from mf_pipeline.lib.settings import Settings
from mf_pipeline.lib.steps.research import options
from mf_pipeline.lib.steps.research.prepare import Prepared
from mf_pipeline.lib.steps.research.prepare import prepare as prepare_split


def _choices(name: str, *values: str) -> type[Enum]:
    """A choice type for run config (Dagster shows it as a drop-down; members named as the
    values, which is what run config and the CLI pass)."""
    return Enum(name, {value: value for value in values}, type=str)


Scaler = _choices("Scaler", "standard", "robust")
ScalingScope = _choices("ScalingScope", "global", "per_ticker")
UnseenPolicy = _choices("UnseenPolicy", "drop", "global")
FitOn = _choices("FitOn", "train", "all")
PredictOn = _choices("PredictOn", "train", "test", "all")
ClusterMethod = _choices("ClusterMethod", "kmeans", "gmm", "hdbscan")
StableMethod = _choices("StableMethod", "kmeans", "gmm")
CovarianceType = _choices("CovarianceType", "diag", "full", "tied", "spherical")
FitProcedure = _choices("FitProcedure", "fast", "spec")


def plain(value: Any) -> Any:
    """A choice as its string (lists element-wise); anything else unchanged."""
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value.value if isinstance(value, Enum) else value


class PrepConfig(dg.Config):
    """Which rows a split fits and evaluates, and how features are scaled."""

    dataset_path: str | None = None
    """ML dataset Parquet; default the newest export."""
    scaler: Scaler | None = None
    scaling_scope: ScalingScope | None = None
    unseen_policy: UnseenPolicy | None = None
    """Per-ticker scope: tickers the fit never saw are dropped or scaled globally."""
    clip_zscore: float | None = None
    embargo_bars: int | None = None
    """Bars between train and test (>= the longest forward label, 20)."""
    date_from: str | None = None
    date_to: str | None = None
    test_start: str | None = None
    """Time split: first test date (the embargo may move it later)."""
    test_end: str | None = None
    """Time split: last test date; bounds the test rows and the prices their labels read."""
    fit_on: FitOn | None = None
    """Default train; ``all`` fits on test rows too (then every figure is in-sample)."""
    predict_on: PredictOn | None = None
    """Default test (all for ``full``); clustering takes test or all."""
    sample_frac: float | None = None
    """Seeded row sample of the loaded dataset, in (0, 1]; seed = the run's random state."""

    def given(self) -> dict[str, Any]:
        """The options that differ from the defaults (recorded in the materialization's
        metadata; empty for a default run, which `mf demo` may then skip when current)."""
        return {key: plain(value) for key, value in self.model_dump(exclude_defaults=True).items()}

    def prepare(self, settings: Settings, kind: str, split: str, seed: int) -> Prepared:
        """Load the dataset and cut, label and scale ``split`` as configured."""
        names = ("scaler", "scaling_scope", "unseen_policy", "clip_zscore", "embargo_bars",
                 "date_from", "date_to", "test_start", "test_end", "fit_on", "predict_on",
                 "sample_frac")
        chosen = {name: plain(getattr(self, name)) for name in names}
        if self.sample_frac is not None:
            chosen["sample_seed"] = seed
        return prepare_split(settings, self.dataset_path, split,
                             options.prep_options(settings, kind, **chosen))

    def seed(self, settings: Settings, kind: str) -> int:
        """The run's random state: its own, else the settings default."""
        own = getattr(self, "random_state", None)
        if own is not None:
            return int(own)
        cfg = (options.cluster_config(settings) if kind == "cluster"
               else options.hmm_config(settings))
        return int(cfg.random_state)


class FitConfig(PrepConfig):
    """Preparation plus the declared fitting procedure (every asset that fits a model)."""

    fit_procedure: FitProcedure | None = None
    """fast | spec (the old tool's fit on every row; default: the settings group's
    ``fit_procedure``, fast)."""

    def cluster_config(self, settings: Settings, **overrides: Any) -> cl.ClusterConfig:
        """``research_clustering`` defaults, this run's procedure, then ``overrides``."""
        return options.cluster_config(settings, fit_procedure=plain(self.fit_procedure),
                                      **overrides)

    def hmm_config(self, settings: Settings, **overrides: Any) -> hm.HmmConfig:
        """``research_hmm.hmm`` defaults, this run's procedure, then ``overrides``."""
        return options.hmm_config(settings, fit_procedure=plain(self.fit_procedure), **overrides)


class ClusterModelConfig(FitConfig):
    method: ClusterMethod = ClusterMethod.kmeans
    n_clusters: int | None = None
    random_state: int | None = None
    silhouette_sample_max: int | None = None
    kmeans_n_init: int | None = None
    run_id: str | None = None

    def cluster_config(self, settings: Settings, **overrides: Any) -> cl.ClusterConfig:
        return super().cluster_config(settings, **{
            "n_clusters": self.n_clusters, "random_state": self.random_state,
            "silhouette_sample_max": self.silhouette_sample_max,
            "kmeans_n_init": self.kmeans_n_init, **overrides})


class HmmModelConfig(FitConfig):
    n_components: int | None = None
    covariance_type: CovarianceType | None = None
    n_iter: int | None = None
    tol: float | None = pydantic.Field(None, gt=0)
    """Absolute hmmlearn tolerance on the total log-likelihood gain, in either procedure
    (default: spec ``research_hmm.hmm.tol``; fast ``tol_per_row`` × EM rows)."""
    tol_per_row: float | None = None
    random_state: int | None = None
    fit_max_rows: int | None = None
    min_sequence_length: int | None = None
    cluster_labels_file: str | None = None
    """Parquet/CSV with ticker, trade_date, cluster_label: cross-tabbed with the states."""
    write_full_decoded_csv: bool = False
    run_id: str | None = None

    def hmm_config(self, settings: Settings, **overrides: Any) -> hm.HmmConfig:
        return super().hmm_config(settings, **{
            "n_components": self.n_components,
            "covariance_type": plain(self.covariance_type), "n_iter": self.n_iter,
            "tol": self.tol, "tol_per_row": self.tol_per_row,
            "random_state": self.random_state, "fit_max_rows": self.fit_max_rows, **overrides})


class StabilityConfig(FitConfig):
    seeds: int | None = None
    seed_start: int | None = None

    def seed_range(self, settings: Settings, kind: str) -> tuple[int, int]:
        """(number of seeds, first seed): the run's, else the settings' ``stability`` of
        ``research_clustering`` (kind ``cluster``) or ``research_hmm`` (kind ``hmm``)."""
        group = settings.research_hmm if kind == "hmm" else settings.research_clustering
        seeds = self.seeds or group.stability.seeds
        start = self.seed_start if self.seed_start is not None else group.stability.seed_start
        return seeds, start


class ClusterSweepConfig(FitConfig):
    methods: list[str] = ["kmeans", "gmm"]
    """Each one of kmeans, gmm, hdbscan."""
    n_clusters_list: list[int] = [4, 5, 6, 8]
    random_state: int = 42


    @pydantic.field_validator("methods")
    @classmethod
    def _known_methods(cls, methods: list[str]) -> list[str]:
        return [ClusterMethod(method).value for method in methods]


class ClusterStabilityConfig(StabilityConfig):
    method: StableMethod = StableMethod.kmeans
    n_clusters: int = 5


class HmmSweepConfig(FitConfig):
    components: list[int] | None = None
    """State counts (default ``research_hmm.sweep.components``, 4,5,6,8)."""

    def component_list(self, settings: Settings) -> list[int]:
        if self.components:
            return list(self.components)
        return list(settings.research_hmm.sweep.components)


class HmmStabilityConfig(StabilityConfig):
    n_components: int | None = None


CONFIGS: dict[str, type[PrepConfig]] = {
    "cluster_model": ClusterModelConfig, "hmm_model": HmmModelConfig,
    "cluster_sweep": ClusterSweepConfig, "cluster_stability": ClusterStabilityConfig,
    "hmm_sweep": HmmSweepConfig, "hmm_stability": HmmStabilityConfig,
}
"""The run config class of each configurable research asset (the CLI checks options with it)."""
