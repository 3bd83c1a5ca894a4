"""Helpers shared by the clustering and HMM runs: run ids and timestamps, table and
preprocessing writers, regime recovery, seed-pair ARI, and the read-only helpers of
the sanity reports and ``mf research-*`` commands.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from mf_pipeline.lib import lake
from mf_pipeline.lib.research.recovery import recovery_report
from mf_pipeline.lib.settings import Settings
from mf_pipeline.lib.steps.research.prepare import TRUTH_FILE, Prepared


def new_run_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def regime_recovery(prep: Prepared, frame: pl.DataFrame, cols: tuple[str, ...]) -> dict | None:
    """ARI/NMI of ``cols`` vs the sample's true regime on the predict rows (None on real data)."""
    if prep.truth is None:
        return None
    joined = frame.select("ticker", "trade_date", *[c for c in cols if c in frame.columns]).join(
        prep.truth, on=["ticker", "trade_date"], how="inner"
    )
    return {
        "truth_file": str(TRUTH_FILE),
        "evaluated_on": prep.predict_on,
        "in_sample": prep.in_sample,
        "rows_with_truth": joined.height,
        "results": recovery_report(joined, "regime", cols),
    }


def write_table(frame: pl.DataFrame, folder: Path, name: str, kinds: tuple[str, ...],
                settings: Settings) -> dict[str, str]:  # fmt: skip
    out: dict[str, str] = {}
    if "parquet" in kinds:
        out[f"{name}_parquet"] = str(lake.write_parquet(frame, folder / f"{name}.parquet",
                                                        settings.parquet))  # fmt: skip
    if "csv" in kinds:
        out[f"{name}_csv"] = str(lake.write_csv(frame, folder / f"{name}.csv"))
    return out


def write_preprocess(prep: Prepared, folder: Path, settings: Settings) -> dict[str, Any]:
    out = {
        "preprocess_summary_path": str(lake.write_json(prep.predict.summary,
                                                       folder / "preprocess_summary.json")),
        "split_summary_path": str(lake.write_json(prep.split_summary,
                                                  folder / "split_summary.json")),
        "feature_list_path": str(lake.write_json({"feature_list": list(prep.scaler.features)},
                                                 folder / "feature_list.json")),
        "scaler_params_path": str(lake.write_json(
            {**prep.scaler.payload(), "clip_zscore": prep.options.clip_zscore},
            folder / "scaler_params.json")),
        "scaler_params_table_path": None,
    }  # fmt: skip
    if prep.scaler.per_ticker is not None:
        out["scaler_params_table_path"] = str(lake.write_parquet(
            prep.scaler.per_ticker, folder / "scaler_params_per_ticker.parquet", settings.parquet))
    return out


def _ari(a: np.ndarray, b: np.ndarray) -> float:
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(a, b))


def ari_table(labels: dict[int, np.ndarray]) -> tuple[pl.DataFrame, dict[str, Any]]:
    seeds = sorted(labels)
    rows = [(a, b, _ari(labels[a], labels[b])) for i, a in enumerate(seeds) for b in seeds[i + 1:]]
    table = pl.DataFrame(rows, schema={"seed_a": pl.Int64, "seed_b": pl.Int64, "ari": pl.Float64},
                         orient="row")  # fmt: skip
    v = table["ari"]
    summary = {"ari_mean": None, "ari_median": None, "ari_min": None, "ari_max": None}
    if v.len():
        summary = {"ari_mean": v.mean(), "ari_median": v.median(), "ari_min": v.min(),
                   "ari_max": v.max()}  # fmt: skip
    return table, summary


def top_rows(frame: pl.DataFrame, by: str, cols: list[str], n: int) -> list[dict[str, Any]]:
    if by not in frame.columns:
        return []
    keep = [c for c in cols if c in frame.columns]
    return frame.sort(by, descending=True, nulls_last=True).head(n).select(keep).to_dicts()


def nan_null_counts(profile: pl.DataFrame) -> dict[str, dict[str, int]]:
    cols = [c for c in profile.columns
            if c.startswith("fwd_") and c.endswith(("_mean", "_median"))]  # fmt: skip
    return {c: {"nan": int(profile[c].is_nan().sum()), "null": int(profile[c].null_count())}
            for c in cols}  # fmt: skip


def read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def read_run_summary(output_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(output_dir) / "run_summary.json").read_text())
