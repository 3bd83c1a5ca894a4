"""Lake outputs of a split's model run: the gold ``cluster_labels``/``hmm_states`` tables
and, for the in-sample ``full`` split, the per-ticker viewer files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from mf_pipeline.lib import lake, registry
from mf_pipeline.lib.research.splits import FULL_SPLIT_ID
from mf_pipeline.lib.settings import Settings

HMM_SYMBOL_COLUMNS = ("ticker", "exchange", "trade_date", "hmm_state", "hmm_state_filtered",
                      "hmm_prob_filtered_max")  # fmt: skip
CLUSTER_SYMBOL_COLUMNS = ("ticker", "exchange", "trade_date", "cluster_label")


def write_state_files(settings: Settings, frame: pl.DataFrame, source: str) -> dict[str, Any]:
    """Per-ticker viewer files of the ``hmm``/``cluster`` band
    (``registry.state_band_root``, a lake table) for the in-sample ``full`` split; files of
    tickers no longer present are removed."""
    cols = HMM_SYMBOL_COLUMNS if source == "hmm" else CLUSTER_SYMBOL_COLUMNS
    if "cluster_label" in cols and "cluster_label" not in frame.columns:
        frame = frame.with_columns(pl.col("cluster_id").alias("cluster_label"))
    if "exchange" not in frame.columns:
        raise ValueError("per-ticker state files need an exchange column")
    root = registry.state_band_root(settings, source)
    out = frame.select(cols).sort("ticker", "trade_date")
    new = set(out["ticker"].unique().to_list())
    gone = sorted(set(lake.symbol_tickers(root)) - new)
    done = lake.write_symbol_files(out, root, settings.parquet, remove=gone)
    return {"root": str(root), "tickers": len(new), "rows": out.height,
            "removed_tickers": len(done.removed)}  # fmt: skip


def publish_cluster_labels(settings: Settings, split_id: str, run_dir: str | Path
                           ) -> dict[str, Any]:  # fmt: skip
    """Split labels table ``<gold_root>/research/cluster_labels/split=<id>/`` from the
    ``cluster_model`` run in ``run_dir``; for ``full`` also the per-ticker viewer files."""
    run_dir = Path(run_dir)
    frame = pl.read_parquet(run_dir / "clustered_dataset_full.parquet")
    keep = [c for c in ("ticker", "exchange", "trade_date", "cluster_id", "cluster_prob_max",
                        "cluster_entropy") if c in frame.columns]  # fmt: skip
    target = settings.gold_root / "research" / "cluster_labels" / f"split={split_id}"
    path = lake.write_parquet(frame.select(keep), target / "cluster_labels.parquet",
                              settings.parquet)  # fmt: skip
    out: dict[str, Any] = {"path": str(path), "rows": frame.height, "run_dir": str(run_dir)}
    if split_id == FULL_SPLIT_ID:
        out["symbol_files"] = write_state_files(settings, frame, "cluster")
    return out


def publish_hmm_states(settings: Settings, split_id: str, run_dir: str | Path) -> dict[str, Any]:
    """Split states table ``<gold_root>/research/hmm_states/split=<id>/`` from the
    ``hmm_model`` run in ``run_dir``; for ``full`` also the per-ticker viewer files."""
    run_dir = Path(run_dir)
    frame = pl.read_parquet(run_dir / "decoded_rows.parquet")
    keep = [c for c in (*HMM_SYMBOL_COLUMNS, "hmm_state_prob_max", "split_id")
            if c in frame.columns]  # fmt: skip
    target = settings.gold_root / "research" / "hmm_states" / f"split={split_id}"
    path = lake.write_parquet(frame.select(keep), target / "hmm_states.parquet", settings.parquet)
    out: dict[str, Any] = {"path": str(path), "rows": frame.height, "run_dir": str(run_dir)}
    if split_id == FULL_SPLIT_ID:
        out["symbol_files"] = write_state_files(settings, frame, "hmm")
    return out
