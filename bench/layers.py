"""Per-layer timing through the pure layer functions (no Dagster), in its own process.

``python -m bench.layers --raw DIR --work DIR --json OUT`` runs raw → manifest → Bronze →
(read Bronze back) → Silver → indicators → events → features → ML dataset once, after a
warm-up pass on a few tickers (absorbs Numba cache loads and first-call costs), writing every
layer into ``--work`` exactly as the pipeline's steps store it (storage precision, one Parquet
file per ticker), Bronze through features in batches of ``--batch-tickers`` tickers. For each
layer it records compute and write wall/CPU seconds, rows/s, peak RSS (reset before each
layer with ``/proc/self/clear_refs``), files and bytes written, load.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from bench.common import Meter, peak_rss_mb, reset_peak_rss, rss_mb, write_json

LAYER_ORDER = ("manifest", "bronze", "bronze_read", "silver", "indicators", "events",
               "features", "ml_dataset")
RUN_ID = "bench-run-000000000000"
ONE_FILE_KEYS = ("one_file_write_wall_s", "one_file_write_cpu_s", "one_file_bytes")


def _paths_of(written: Any) -> list[Path]:
    if isinstance(getattr(written, "files", None), list):  # a lake commit (lake_table.Written)
        return written.files
    if isinstance(written, dict):
        return [Path(p) for p in written.values()]
    if isinstance(written, list | tuple):
        return [Path(p) for p in written]
    return []


def measure(name: str, compute: Callable[[], Any], write: Callable[[Any], Any] | None,
            rows: Callable[[Any], int], unit: str = "rows",
            write_one_file: Callable[[Any], Path] | None = None) -> tuple[Any, dict[str, Any]]:
    """Run ``compute`` then ``write(result)``; return the result and the layer's record.

    ``write_one_file(result)``, timed apart and not counted in the layer's wall, writes the
    same rows as one Parquet file: what the per-ticker file layout costs, measured.
    """
    reset_ok = reset_peak_rss()
    before = rss_mb()
    with Meter() as compute_meter:
        result = compute()
    with Meter() as write_meter:
        written = write(result) if write is not None else None
    peak = peak_rss_mb()  # the layer's own peak, before the comparison write below
    one_file: dict[str, Any] = {}
    if write_one_file is not None:
        with Meter() as one_meter:
            path = write_one_file(result)
        one_file = {"one_file_write_wall_s": one_meter.wall_s,
                    "one_file_write_cpu_s": one_meter.cpu_s,
                    "one_file_bytes": path.stat().st_size}
    paths = _paths_of(written)
    n = int(rows(result))
    wall = compute_meter.wall_s + write_meter.wall_s
    record = {
        "layer": name,
        "unit": unit,
        "rows": n,
        "compute_wall_s": compute_meter.wall_s,
        "compute_cpu_s": compute_meter.cpu_s,
        "write_wall_s": write_meter.wall_s,
        "write_cpu_s": write_meter.cpu_s,
        "wall_s": wall,
        "cpu_s": compute_meter.cpu_s + write_meter.cpu_s,
        "rows_per_s": n / wall if wall > 0 else None,
        "compute_rows_per_s": n / compute_meter.wall_s if compute_meter.wall_s > 0 else None,
        "rss_before_mb": before,
        "peak_rss_mb": peak,
        "peak_rss_is_per_layer": reset_ok,
        "files_written": len(paths),
        "bytes_written": sum(p.stat().st_size for p in paths if p.exists()),
        "load_before": compute_meter.load_before,
        "load_after": write_meter.load_after,
        "others_cpu_frac": round(
            (compute_meter.others_cpu_frac * compute_meter.wall_s
             + write_meter.others_cpu_frac * write_meter.wall_s) / wall, 3) if wall > 0 else 0.0,
        "steal_frac": round(
            (compute_meter.steal_frac * compute_meter.wall_s
             + write_meter.steal_frac * write_meter.wall_s) / wall, 3) if wall > 0 else 0.0,
        **one_file,
    }
    return result, record


def _settings_for(raw: Path, work: Path) -> Any:
    os.environ["MF_PIPELINE_PATHS__RAW_ROOT"] = str(raw)
    os.environ["MF_PIPELINE_PATHS__DATA_ROOT"] = str(work / "data")
    os.environ["MF_PIPELINE_PATHS__ARTIFACTS_ROOT"] = str(work / "artifacts")
    from mf_pipeline.lib.settings import load_settings

    return load_settings()


def combine(records: list[dict[str, Any]]) -> dict[str, Any]:
    """One layer's batch records as one: sums, maxima for RSS, load of the first/last batch."""
    if len(records) == 1:
        return records[0]
    first = records[0]
    merged = dict(first)
    for key in ("rows", "compute_wall_s", "compute_cpu_s", "write_wall_s", "write_cpu_s",
                "wall_s", "cpu_s", "files_written", "bytes_written", "input_mb", *ONE_FILE_KEYS):
        if key in first:
            merged[key] = sum(r[key] for r in records)
    merged["peak_rss_mb"] = max(r["peak_rss_mb"] for r in records)
    merged["rss_before_mb"] = max(r["rss_before_mb"] for r in records)
    merged["load_after"] = records[-1]["load_after"]
    wall, compute = merged["wall_s"], merged["compute_wall_s"]
    merged["rows_per_s"] = merged["rows"] / wall if wall > 0 else None
    merged["compute_rows_per_s"] = merged["rows"] / compute if compute > 0 else None
    if "input_mb" in merged and compute > 0:
        merged["input_mb_per_s"] = merged["input_mb"] / compute
    for key in ("others_cpu_frac", "steal_frac"):
        merged[key] = round(sum(r[key] * r["wall_s"] for r in records) / wall, 3) if wall else 0.0
    merged["batches"] = len(records)
    return merged


def run_chain(raw: Path, work: Path, limit: int | None = None,
              batch_tickers: int = 1000) -> list[dict[str, Any]]:
    """Every layer once over the universe at ``raw`` (first ``limit`` tickers), into ``work``.

    Bronze through features run per batch of ``batch_tickers`` tickers (as the pipeline's
    derived step does, bounding memory); a layer's record sums its batches.
    """
    import polars as pl

    from mf_pipeline.lib import lake
    from mf_pipeline.lib.layers import events as ev_layer
    from mf_pipeline.lib.layers import features as ft_layer
    from mf_pipeline.lib.layers import manifest as mf
    from mf_pipeline.lib.layers.bronze.build import build_bronze
    from mf_pipeline.lib.layers.bronze.validate import ValidationThresholds
    from mf_pipeline.lib.layers.indicators import build_indicators
    from mf_pipeline.lib.layers.silver import build_silver
    from mf_pipeline.lib.steps import dataset_step
    from mf_pipeline.lib.steps.derived_step import (
        BRONZE_INPUT,
        storage_dtype,
        to_storage,
        widen,
    )

    settings = _settings_for(raw, work)
    built_ts = dt.datetime.now(dt.UTC)
    ind_cfg = settings.indicators
    ev_params = ev_layer.EventParams.from_settings(settings.event_grammar.model_dump())
    ft_params = ft_layer.FeatureParams.from_settings(settings.gold_features.model_dump())
    bronze_root = lake.LAYERS["bronze"].root(settings)

    def classify() -> pl.DataFrame:
        return mf.classify(mf.discover(raw), mf.empty_manifest())

    classified, manifest_rec = measure("manifest", classify, None, lambda df: df.height,
                                       unit="files")
    files = classified.filter(pl.col("manifest_status") != mf.DELETED).sort("source_file")
    tickers = sorted(files["ticker"].drop_nulls().unique().to_list())[:limit]
    per_layer: dict[str, list[dict[str, Any]]] = {name: [] for name in LAYER_ORDER[1:-1]}
    kept: dict[str, pl.DataFrame] = {}
    stored_last: dict[str, pl.DataFrame] = {}

    def height(frame: pl.DataFrame) -> int:
        return frame.height

    def store(layer: str) -> Callable[[pl.DataFrame], dict[str, Path]]:
        root = lake.LAYERS[layer].root(settings)
        run_id = f"{layer}-run-bench"

        def write(frame: pl.DataFrame) -> dict[str, Path]:
            stored = to_storage(frame, storage_dtype(settings, layer)).with_columns(
                run_id=pl.lit(run_id), built_ts=pl.lit(built_ts, dtype=pl.Datetime("us", "UTC")))
            kept[layer] = widen(stored)
            stored_last[layer] = stored
            return lake.write_symbol_files(stored, root, settings.parquet, {"run_id": run_id})

        return write

    def one_file(layer: str) -> Callable[[Any], Path]:
        """Write the rows the layer just stored per ticker as one file instead."""
        def write(result: Any) -> Path:
            rows = result.valid if layer == "bronze" else stored_last[layer]
            target = work / "one_file" / layer / f"part-{len(per_layer[layer]):03d}.parquet"
            return lake.write_parquet(rows, target, settings.parquet, {"run_id": RUN_ID})

        return write

    def read_bronze(batch: list[str]) -> pl.DataFrame:
        scan = lake.scan_layer(settings, "bronze", batch)
        assert scan is not None, "no Bronze files were written"
        return widen(scan.select(BRONZE_INPUT).collect()).sort(["ticker", "trade_date"])

    for start in range(0, len(tickers), batch_tickers):
        batch = tickers[start : start + batch_tickers]
        chosen = files.filter(pl.col("ticker").is_in(batch))
        raw_bytes = int(chosen["file_size_bytes"].sum() or 0)
        chosen = chosen.select("source_file", "path", "ticker", "exchange", "fail_reason")
        _, rec = measure(
            "bronze",
            partial(build_bronze, chosen, ValidationThresholds(), RUN_ID, built_ts),
            lambda r: lake.write_symbol_files(r.valid, bronze_root, settings.parquet,
                                              {"run_id": RUN_ID}),
            lambda r: r.valid.height,
            write_one_file=one_file("bronze"),
        )
        rec["input_mb"] = raw_bytes / 1e6
        per_layer["bronze"].append(rec)
        bronze, rec = measure("bronze_read", partial(read_bronze, batch), None, height)
        per_layer["bronze_read"].append(rec)
        _, rec = measure("silver", partial(build_silver, bronze, eps=ind_cfg.eps),
                         store("silver"), height, write_one_file=one_file("silver"))
        per_layer["silver"].append(rec)
        del bronze
        _, rec = measure(
            "indicators",
            lambda: build_indicators(kept["silver"], ind_cfg.tmf_period, ind_cfg.proxy_period,
                                     ind_cfg.eps),
            store("indicators"), height, write_one_file=one_file("indicators"))
        per_layer["indicators"].append(rec)
        kept.pop("silver")
        _, rec = measure("events", lambda: ev_layer.build_events(kept["indicators"], ev_params),
                         store("events"), height, write_one_file=one_file("events"))
        per_layer["events"].append(rec)
        _, rec = measure(
            "features",
            lambda: ft_layer.build_features(kept["indicators"], kept["events"], ft_params),
            store("features"), height, write_one_file=one_file("features"))
        per_layer["features"].append(rec)
        kept.clear()

    def export() -> Any:
        return dataset_step.export_ml_dataset(settings, "ml-dataset-bench")

    _, export_rec = measure(
        "ml_dataset", export, lambda out: [out.dataset_path, out.metadata_path],
        lambda out: int(out.metadata.get("row_count", 0)))
    bronze_rec = combine(per_layer["bronze"])
    bronze_rec["input_mb_per_s"] = bronze_rec["input_mb"] / bronze_rec["compute_wall_s"]
    per_layer["bronze"] = [bronze_rec]
    return [manifest_rec, *(combine(per_layer[name]) for name in LAYER_ORDER[1:-1]),
            export_rec]


def total_record(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum of the layers; rows/s counts Bronze bars over the whole chain's wall time."""
    bars = next((r["rows"] for r in records if r["layer"] == "bronze"), 0)
    wall = sum(r["wall_s"] for r in records)
    return {
        "layer": "total",
        "unit": "bars",
        "rows": bars,
        "compute_wall_s": sum(r["compute_wall_s"] for r in records),
        "compute_cpu_s": sum(r["compute_cpu_s"] for r in records),
        "write_wall_s": sum(r["write_wall_s"] for r in records),
        "write_cpu_s": sum(r["write_cpu_s"] for r in records),
        "wall_s": wall,
        "cpu_s": sum(r["cpu_s"] for r in records),
        "rows_per_s": bars / wall if wall > 0 else None,
        "compute_rows_per_s": None,
        "rss_before_mb": records[0]["rss_before_mb"] if records else None,
        "peak_rss_mb": max((r["peak_rss_mb"] for r in records), default=None),
        "peak_rss_is_per_layer": False,
        "files_written": sum(r["files_written"] for r in records),
        "bytes_written": sum(r["bytes_written"] for r in records),
        "load_before": records[0]["load_before"] if records else [],
        "load_after": records[-1]["load_after"] if records else [],
        "others_cpu_frac": round(sum(r["others_cpu_frac"] * r["wall_s"] for r in records)
                                 / wall, 3) if wall > 0 else 0.0,
        "steal_frac": round(sum(r["steal_frac"] * r["wall_s"] for r in records)
                            / wall, 3) if wall > 0 else 0.0,
        # every layer's rows written as one file, against the write_* sums (per-ticker files)
        **{key: sum(r.get(key, 0) for r in records) for key in ONE_FILE_KEYS},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--warmup-tickers", type=int, default=5)
    parser.add_argument("--batch-tickers", type=int, default=1000)
    parser.add_argument("--keep", action="store_true", help="Keep the written lake.")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    import mf_pipeline.lib.layers.features  # noqa: F401  (import cost, measured)
    import mf_pipeline.lib.steps.derived_step  # noqa: F401

    import_s = time.perf_counter() - started
    warmup_s = 0.0
    if args.warmup_tickers > 0:
        tick = time.perf_counter()
        run_chain(args.raw, args.work / "warmup", limit=args.warmup_tickers)
        shutil.rmtree(args.work / "warmup", ignore_errors=True)
        warmup_s = time.perf_counter() - tick
    records = run_chain(args.raw, args.work / "lake", batch_tickers=args.batch_tickers)
    if not args.keep:
        shutil.rmtree(args.work / "lake", ignore_errors=True)
    write_json({"import_s": import_s, "warmup_s": warmup_s,
                "layers": [*records, total_record(records)]}, args.json)


if __name__ == "__main__":
    main()
