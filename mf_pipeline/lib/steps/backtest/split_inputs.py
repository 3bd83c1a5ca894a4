"""What a split-partitioned backtest trades: the split's test rows with all three state
columns (the rows the validation of the split judged), prices from Silver, and the causal
direction sources.

- Rows: the rows both the HMM run and the clustering run of the split labelled, up to the
  split's test end (:func:`validation.inputs.test_end_of`), so the three sources trade the
  same rows. Open/high/low/close/volume come from Silver, so fills happen at real opens (the
  decoded rows carry only the close; the old tool then derived open = close).
- HMM directions: ``train_state_scorecard.csv`` of the split's HMM run, the forward returns of
  each filtered state on the TRAIN rows; never the traded rows' own future (fault 6).
- Cluster classes (and the overlay's): on a walk-forward split, a policy judged on the split's
  TRAIN rows (:mod:`train_policy`), known when the test starts. The split's own
  ``state_policy_cluster`` judges the test rows themselves; it is used for ``full`` (in-sample
  anyway) and for clustering runs from before train rows were kept, and then the run says
  ``in_sample: true``.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import polars as pl

from mf_pipeline.lib import lake
from mf_pipeline.lib.research.splits import FULL_SPLIT_ID
from mf_pipeline.lib.settings import Settings
from mf_pipeline.lib.steps.backtest.run import BacktestInputs
from mf_pipeline.lib.steps.backtest.train_policy import train_policy, train_rows_file
from mf_pipeline.lib.steps.research.hmm import TRAIN_SCORECARD
from mf_pipeline.lib.steps.validation.inputs import test_end_of
from mf_pipeline.lib.steps.validation.policy import POLICY_FILE

SOURCE_TYPES = ("flow", "hmm", "cluster")
DECODED = "decoded_rows.parquet"
CLUSTERED = "clustered_dataset_full.parquet"
HMM_COLS = ("ticker", "trade_date", "exchange", "trade_dt", "close", "volume", "atr_pct_14",
            "fwd_ret_10", "flow_state_code", "hmm_state_filtered", "hmm_prob_filtered_max")
PRICE_COLS = ("open", "high", "low", "close", "volume")


def _need(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {what}")
    return path


def silver_prices(settings: Settings, rows: pl.LazyFrame) -> tuple[pl.LazyFrame, str]:
    """``rows`` with open/high/low/close/volume from Silver (fills at real opens) and the
    price source's name; the rows' own close when the lake has no Silver."""
    silver = lake.scan_layer(settings, "silver")
    if silver is None:
        return rows, "decoded_close"
    return rows.drop("close", "volume", strict=False).join(
        silver.select("ticker", "trade_date", *PRICE_COLS), on=["ticker", "trade_date"],
        how="left"), "silver"


def split_bars(settings: Settings, split_key: str, hmm_dir: str | Path, cluster_dir: str | Path,
               test_end: dt.date | None) -> tuple[pl.DataFrame, dict[str, Any]]:  # fmt: skip
    """The split's common rows up to ``test_end`` with Silver prices (see module doc)."""
    decoded = pl.scan_parquet(_need(Path(hmm_dir) / DECODED, "rerun the split's HMM model"))
    clustered = pl.scan_parquet(_need(Path(cluster_dir) / CLUSTERED,
                                      "rerun the split's clustering model"))
    names = decoded.collect_schema().names()
    rows = decoded.select([c for c in HMM_COLS if c in names]).join(
        clustered.select("ticker", "trade_date", "cluster_id"), on=["ticker", "trade_date"],
        how="inner")
    if test_end is not None:
        rows = rows.filter(pl.col("trade_date") <= test_end)
    rows, price_source = silver_prices(settings, rows)
    frame = rows.sort("ticker", "trade_date").collect()
    info = {"split_id": split_key, "hmm_run_dir": str(hmm_dir),
            "cluster_run_dir": str(cluster_dir), "rows": frame.height,
            "test_end": test_end.isoformat() if test_end else None,
            "price_source": price_source}  # fmt: skip
    return frame, info


def _cluster_policy(settings: Settings, split_key: str, cluster_dir: str | Path,
                    policy_dir: str | Path | None) -> tuple[dict[str, Any], Path, bool]:
    """The cluster policy of a split and whether it was judged on the traded (test) rows:
    a walk-forward split's own train rows when its clustering run kept them, else the
    split's ``state_policy_cluster`` (the ``full`` split, or a run from before train rows)."""
    if split_key != FULL_SPLIT_ID and train_rows_file(cluster_dir).is_file():
        policy, path = train_policy(settings, split_key, cluster_dir)
        return policy, path, False
    if policy_dir is None:
        raise ValueError("cluster classes need the split's state policy (state_policy_cluster)")
    path = _need(Path(policy_dir) / POLICY_FILE, "run mf cluster-hardening-run first")
    return json.loads(path.read_text()), path, True


def split_inputs(settings: Settings, split_key: str, source: str, hmm_dir: str | Path,
                 cluster_dir: str | Path, policy_dir: str | Path | None = None, *,
                 non_overlapping: bool = True, test_end: dt.date | None = None,
                 overlay: bool = False,
                 bars: tuple[pl.DataFrame, dict[str, Any]] | None = None,
                 ) -> BacktestInputs:  # fmt: skip
    """The :class:`BacktestInputs` of ``source`` on split ``split_key``. ``overlay``: gate the
    signals with the split's own cluster policy looked up on each row's cluster (§6).
    ``bars``: :func:`split_bars` already read for this split and test end (a grid's sources
    share them)."""
    if source not in SOURCE_TYPES:
        raise ValueError(f"unknown backtest source {source!r}: one of {', '.join(SOURCE_TYPES)}")
    if test_end is None:
        test_end = test_end_of(settings, split_key, non_overlapping)
    started = time.perf_counter()
    frame, info = bars or split_bars(settings, split_key, hmm_dir, cluster_dir, test_end)
    in_sample = split_key == FULL_SPLIT_ID
    identity = {**info, "source": source, "non_overlapping_test": non_overlapping}
    inputs = BacktestInputs(rows=frame, input_type=source, tag=f"{split_key}-{source}",
                            identity=identity, input_file=str(Path(hmm_dir) / DECODED),
                            in_sample=in_sample, extra={"split": info},
                            load_sec=time.perf_counter() - started)  # fmt: skip
    if source == "hmm":
        card = _need(Path(hmm_dir) / f"{TRAIN_SCORECARD}.csv",
                     "the HMM run predates train scorecards: rerun the split's HMM model")
        inputs.state_col = "hmm_state_filtered"
        inputs.scorecard = pl.read_csv(card)
        inputs.scorecard_source = "train_scorecard"
        identity["direction_file"] = str(card)
    if source != "cluster" and not overlay:
        return inputs
    policy, path, judged_on_test = _cluster_policy(settings, split_key, cluster_dir, policy_dir)
    identity["policy_file"] = str(path)
    identity["policy_generated"] = policy.get("generated_ts")
    inputs.in_sample = in_sample or judged_on_test
    inputs.extra["policy_judged_on"] = "test_rows" if judged_on_test else "train_rows"
    if source == "cluster":
        inputs.cluster_policy = policy
        inputs.input_file = str(Path(cluster_dir) / CLUSTERED)
    if overlay:
        inputs.overlay_rows = frame.select("ticker", "trade_date", "cluster_id")
        inputs.overlay_policy = policy
        identity["overlay"] = "split_cluster_policy"
    return inputs
