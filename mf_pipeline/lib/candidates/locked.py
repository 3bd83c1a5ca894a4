"""Locked models of a production candidate (issue #22 item 1): copies of everything that
re-decodes new bars, and the causal decode of the lake's current ML dataset with them.

A candidate comes from a SPLIT grid source (``hmm_run_dir``/``cluster_run_dir`` in its identity).
:func:`lock` copies the HMM run's parameters, scaler (and per-ticker table), feature list,
split and preprocessing summaries and train scorecard (the directions), the clustering run's
fitted model and scaler, and the grid's cluster policy file, into ``locked_dir`` with a SHA-256
per file: the pack keeps working when the research run folders are deleted.

:func:`decode_locked` never refits. It reads the lake's CURRENT ML dataset (the newest export,
the reader research runs use), scales each row with the locked scaler and runs the HMM forward
filter from the row where the original run's decoded sequences started (its test start; the
first row for ``full``), so on the original rows it gives the original ``hmm_state_filtered``
exactly, and a state depends on bars <= t only: appending bars never changes earlier states.
Cluster ids come from the locked clustering model row by row. The split backtest trades the rows
both models labelled (:func:`split_inputs.split_bars`); so does :func:`locked_inputs`, which is
why the clustering model is locked even for an HMM candidate without the overlay.

Universe: the tickers the original HMM run decoded are the locked universe. A ticker outside it
(absent at lock time, or dropped by the run as too short) is reported, not decoded; so is a
ticker a per-ticker scaler never saw (unless the run scaled unseen tickers globally, which the
locked decode then repeats).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from mf_pipeline.lib import lake
from mf_pipeline.lib.reports import publish
from mf_pipeline.lib.research import hmm as hm
from mf_pipeline.lib.research.clustering import predict_clusters
from mf_pipeline.lib.research.features import ScalerModel, transform
from mf_pipeline.lib.settings import Settings
from mf_pipeline.lib.steps.backtest.run import BacktestInputs, finite_json
from mf_pipeline.lib.steps.backtest.split_inputs import DECODED, HMM_COLS, silver_prices
from mf_pipeline.lib.steps.research.cluster import CLUSTER_MODEL, FITTED_ROWS, read_cluster_model
from mf_pipeline.lib.steps.research.hmm import TRAIN_SCORECARD
from mf_pipeline.lib.steps.research.prepare import resolve_dataset
from mf_pipeline.lib.steps.validation.options import digest

log = logging.getLogger(__name__)
LOCK_FILE = "lock.json"
UNIVERSE_FILE = "universe.json"
POLICY_COPY = "policy/cluster_hardening_policy.json"
SCORECARD_COPY = f"hmm/{TRAIN_SCORECARD}.csv"
SCALER = "scaler_params.json"
SCALER_TABLE = "scaler_params_per_ticker.parquet"
RUN_FILES = (SCALER, SCALER_TABLE, "feature_list.json", "split_summary.json",
             "preprocess_summary.json", "run_summary.json")  # fmt: skip
HMM_FILES = ("hmm_model_meta.json", f"{TRAIN_SCORECARD}.csv")
CLUSTER_FILES = (CLUSTER_MODEL, FITTED_ROWS)
STATE_COLS = ("hmm_state_filtered", "hmm_prob_filtered_max")
ROW_COLS = tuple(c for c in HMM_COLS if c not in ("ticker", "trade_date", "fwd_ret_10",
                                                   *STATE_COLS))  # fmt: skip
"""Row columns a split backtest reads besides the states; ``fwd_ret_10`` (a label of the test
segment, never read by the signals) is not reproduced."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _grid_source(grid_dir: Path, source_type: str) -> dict[str, Any]:
    """The grid's ``source_type`` source; an error naming the grid when it is not a split
    source (a file grid's candidate cannot be locked). Its ``policy_file`` defaults to the
    one another source of the same clustering run used (the split's cluster policy)."""
    summary_path = grid_dir / "grid_summary.json"
    if not summary_path.is_file():
        raise FileNotFoundError(f"{grid_dir} is not a finished grid (no grid_summary.json)")
    sources = _read(summary_path).get("sources") or []
    found = [s for s in sources if s.get("source_type") == source_type]
    if not found:
        raise ValueError(f"grid {grid_dir} has no {source_type!r} source")
    identity = found[0].get("identity") or {}
    if not identity.get("hmm_run_dir") or not identity.get("cluster_run_dir"):
        raise ValueError(f"grid {grid_dir}: its {source_type!r} source was read from a file, "
                         "not from a split's research runs; only split grids can be locked")
    shared = [(s.get("identity") or {}).get("policy_file") for s in sources
              if (s.get("identity") or {}).get("cluster_run_dir") == identity["cluster_run_dir"]]
    policy = identity.get("policy_file") or next((p for p in shared if p), None)
    return {**found[0], "identity": {**identity, "policy_file": policy}}


def _window(run_dir: Path) -> dict[str, Any]:
    """Which dataset rows the run decoded: from its first decoded date on (``decode_from``:
    the test start, None for ``full`` or ``predict_on=all``), without the embargo dates of
    ``predict_on=all`` and from ``date_from``. A sampled run cannot be reproduced."""
    split = _read(run_dir / "split_summary.json")
    filters = split.get("filters") or {}
    if filters.get("sample_frac") is not None:
        raise ValueError(f"{run_dir} was fitted on a row sample (sample_frac): its decoded "
                         "sequences cannot be reproduced; rerun without sampling to lock it")
    predict_on = split.get("predict_on") or "test"
    if split.get("split_kind") == "full_in_sample":
        start, skip = None, None
    elif predict_on == "test":
        start, skip = split.get("test_start"), None
    elif predict_on == "all":
        start, skip = None, [split.get("embargo_first_date"), split.get("embargo_last_date")]
    else:
        raise ValueError(f"{run_dir} decoded its train rows only (predict_on={predict_on}): "
                         "not a tradable continuation; lock a run that predicts test or all")
    date_from = filters.get("date_from")
    if date_from and (start is None or date_from > start):
        start = date_from
    skip = skip if skip and skip[0] else None
    return {"decode_from": start, "skip_dates": skip,
            "unseen_policy": split.get("predict_unseen_policy") or "drop"}  # fmt: skip


def _copy(run_dir: Path, target: Path, names: tuple[str, ...]) -> None:
    """Copy the ``names`` the run has (the per-ticker table and HDBSCAN rows are optional)."""
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        if (run_dir / name).is_file():
            shutil.copyfile(run_dir / name, target / name)


def _need(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {what}")
    return path


def lock(settings: Settings, locked_dir: Path, grid_dir: Path, source_type: str,
         overlay: bool) -> dict[str, Any]:  # fmt: skip
    """Copy what re-decodes the candidate's bars into ``locked_dir`` (written atomically) and
    return its description: the runs' windows, the copied files and their SHA-256, a
    ``lock_id`` digest of those hashes, and the last trade date of the original rows."""
    del settings  # the lock reads run folders only; kept for the contract's signature
    grid_dir = Path(grid_dir)
    source = _grid_source(grid_dir, source_type)
    identity = source["identity"]
    hmm_dir, cluster_dir = Path(identity["hmm_run_dir"]), Path(identity["cluster_run_dir"])
    _need(hmm_dir / "hmm_model_meta.json", "rerun the split's HMM model")
    _need(hmm_dir / f"{TRAIN_SCORECARD}.csv", "rerun the split's HMM model (train scorecard)")
    _need(cluster_dir / CLUSTER_MODEL, "the clustering run predates saved models; rerun it")
    policy_file = identity.get("policy_file")
    if (source_type == "cluster" or overlay) and not policy_file:
        raise ValueError(f"grid {grid_dir}: the {source_type!r} source names no cluster policy "
                         "file (policy_file) to lock")
    decoded = pl.scan_parquet(_need(hmm_dir / DECODED, "rerun the split's HMM model"))
    names = decoded.collect_schema().names()
    ends = decoded.select(pl.col("trade_date").max().alias("last"),
                          pl.col("ticker").unique().sort().implode().alias("tickers")).collect()
    description: dict[str, Any] = {
        "lock_version": 1, "source_type": source_type, "overlay": bool(overlay),
        "source_grid_dir": str(grid_dir), "split_id": identity.get("split_id"),
        "test_end": identity.get("test_end"), "in_sample": source.get("in_sample"),
        "hmm_run_dir": str(hmm_dir), "cluster_run_dir": str(cluster_dir),
        "source_policy_file": policy_file,
        "hmm": {**_window(hmm_dir), "columns": [c for c in ROW_COLS if c in names],
                "tickers": len(ends["tickers"][0])},
        "cluster": _window(cluster_dir),
        "direction_file": SCORECARD_COPY,
        "policy_file": POLICY_COPY if policy_file else None,
        "lake_last_date": str(ends["last"][0]) if ends["last"][0] is not None else None,
    }  # fmt: skip

    def write(temp: Path) -> None:
        _copy(hmm_dir, temp / "hmm", RUN_FILES + HMM_FILES)
        lake.write_json({"tickers": ends["tickers"][0].to_list()}, temp / "hmm" / UNIVERSE_FILE)
        _copy(cluster_dir, temp / "cluster", RUN_FILES + CLUSTER_FILES)
        if policy_file:
            (temp / "policy").mkdir()
            shutil.copyfile(_need(Path(policy_file), "the grid's cluster policy"),
                            temp / POLICY_COPY)
        files = sorted(p for p in temp.rglob("*") if p.is_file())
        description["files"] = {p.relative_to(temp).as_posix(): _sha256(p) for p in files}
        description["lock_id"] = "lock-" + digest(description["files"])
        lake.write_json(finite_json(description), temp / LOCK_FILE)

    publish(Path(locked_dir), write)
    return description


def read_lock(locked_dir: Path) -> dict[str, Any]:
    """The lock's description; an error when a copied file's content no longer matches its
    recorded SHA-256 (the locked model was altered)."""
    locked_dir = Path(locked_dir)
    description = _read(_need(locked_dir / LOCK_FILE, "not a locked candidate folder"))
    bad = [name for name, sha in description["files"].items()
           if not (locked_dir / name).is_file() or _sha256(locked_dir / name) != sha]
    if bad:
        raise ValueError(f"{locked_dir}: locked files changed or missing since the lock: {bad}")
    return description


def _scaler(part: Path) -> tuple[ScalerModel, float | None]:
    payload = _read(part / SCALER)
    table = pl.read_parquet(part / SCALER_TABLE) if (part / SCALER_TABLE).is_file() else None
    return ScalerModel.from_payload(payload, table), payload.get("clip_zscore")


def _rows(frame: pl.DataFrame, window: dict[str, Any]) -> pl.DataFrame:
    """The rows of the run's decode window (:func:`_window`); an error when there are none."""
    date = pl.col("trade_date")
    if window["decode_from"]:
        frame = frame.filter(date >= dt.date.fromisoformat(window["decode_from"]))
    if window["skip_dates"]:
        lo, hi = (dt.date.fromisoformat(d) for d in window["skip_dates"])
        frame = frame.filter(~date.is_between(lo, hi))
    if frame.height == 0:
        raise ValueError(f"no dataset row of the locked universe in the decode window "
                         f"(from {window['decode_from']}); is as_of before it?")
    return frame


def _dataset(settings: Settings, columns: set[str], as_of: dt.date | None,
             tickers: Sequence[str] | None = None) -> tuple[pl.DataFrame, Path]:  # fmt: skip
    """The current ML dataset's needed columns, up to ``as_of``, sorted by ticker and date
    (only ``tickers``' rows when given: each ticker decodes on its own)."""
    path = resolve_dataset(settings, None)
    scan = pl.scan_parquet(path)
    have = scan.collect_schema().names()
    scan = scan.select([c for c in have if c in columns]).with_columns(
        pl.col("ticker").cast(pl.String), pl.col("trade_date").cast(pl.Date, strict=False))
    if as_of is not None:
        scan = scan.filter(pl.col("trade_date") <= as_of)
    if tickers is not None:
        scan = scan.filter(pl.col("ticker").is_in(list(tickers)))
    return scan.sort("ticker", "trade_date").collect(), path


def _hmm_states(frame: pl.DataFrame, part: Path, window: dict[str, Any], columns: list[str]
                ) -> pl.DataFrame:  # fmt: skip
    """The locked HMM's causal states of ``frame``'s windowed rows (one sequence per ticker
    from its first row in the window, exactly as the original run's decode)."""
    scaler, clip = _scaler(part)
    pre = transform(_rows(frame, window), scaler, clip, window["unseen_policy"], columns)
    params = hm.HmmParams.from_payload(_read(part / "hmm_model_meta.json")["params"])
    seqs = hm.build_sequences(pre.frame, pre.X, 1, columns)
    prob, _ = hm.forward_filter(params, seqs.X, seqs.offsets)
    return seqs.frame.drop("row_id").with_columns(
        pl.Series("hmm_state_filtered", prob.argmax(axis=1), dtype=pl.Int16),
        pl.Series("hmm_prob_filtered_max", prob.max(axis=1), dtype=pl.Float64))


def _cluster_ids(frame: pl.DataFrame, part: Path, window: dict[str, Any]) -> pl.DataFrame:
    scaler, clip = _scaler(part)
    pre = transform(_rows(frame, window), scaler, clip, window["unseen_policy"])
    model, _ = read_cluster_model(part)
    ids = predict_clusters(model, pre.X)
    return pre.frame.select("ticker", "trade_date",
                            pl.Series("cluster_id", ids, dtype=pl.Int32))  # fmt: skip


def _decode(settings: Settings, locked_dir: Path, lock_info: dict[str, Any],
            as_of: dt.date | None, tickers: Sequence[str] | None = None
            ) -> tuple[pl.DataFrame, dict[str, Any]]:  # fmt: skip
    started = time.perf_counter()
    hmm_part, cluster_part = locked_dir / "hmm", locked_dir / "cluster"
    columns = list(lock_info["hmm"]["columns"])
    features = set(_read(hmm_part / "feature_list.json")["feature_list"])
    features |= set(_read(cluster_part / "feature_list.json")["feature_list"])
    frame, path = _dataset(settings, {"ticker", "trade_date", *columns, *features}, as_of,
                           tickers)
    universe = _read(hmm_part / UNIVERSE_FILE)["tickers"]
    outside = sorted(set(frame["ticker"].unique().to_list()) - set(universe))
    frame = frame.filter(pl.col("ticker").is_in(universe))
    states = _hmm_states(frame, hmm_part, lock_info["hmm"], columns)
    clusters = _cluster_ids(frame, cluster_part, lock_info["cluster"])
    out = states.join(clusters, on=["ticker", "trade_date"], how="inner", maintain_order="left")
    last = out["trade_date"].max() if out.height else None
    report = {"dataset_path": str(path), "as_of": as_of.isoformat() if as_of else None,
              "rows": out.height, "hmm_rows": states.height, "cluster_rows": clusters.height,
              "last_trade_date": str(last) if last else None,
              "tickers": out["ticker"].n_unique(), "tickers_outside_universe": outside,
              "decode_sec": round(time.perf_counter() - started, 3)}  # fmt: skip
    if outside:
        log.warning("%s: %d tickers outside the locked universe are not decoded: %s",
                    locked_dir, len(outside), ", ".join(outside[:10]))
    return out, report


def decode_with_report(settings: Settings, locked_dir: Path, as_of: dt.date | None = None
                       ) -> tuple[pl.DataFrame, dict[str, Any]]:  # fmt: skip
    """:func:`decode_locked` and its report: dataset, rows, last trade date, tickers outside
    the locked universe (not decoded), seconds."""
    locked_dir = Path(locked_dir)
    return _decode(settings, locked_dir, read_lock(locked_dir), as_of)


def decode_locked(settings: Settings, locked_dir: Path, as_of: dt.date | None = None
                  ) -> pl.DataFrame:  # fmt: skip
    """Every (ticker, trade_date) of the lake's current ML dataset up to ``as_of`` that both
    locked models label, with ``hmm_state_filtered``/``hmm_prob_filtered_max`` (forward
    filter, causal), ``cluster_id`` and the row columns the split backtest reads
    (``flow_state_code``, ``close``, ``volume``, ``atr_pct_14``… as the original decoded rows
    had them). Tickers outside the locked universe (module doc) are logged, not decoded."""
    return decode_with_report(settings, locked_dir, as_of)[0]


def locked_inputs(settings: Settings, locked_dir: Path, source_type: str,
                  as_of: dt.date | None, overlay: bool, tag: str,
                  tickers: Sequence[str] | None = None) -> BacktestInputs:  # fmt: skip
    """The :class:`BacktestInputs` of the locked candidate up to ``as_of``, as
    :func:`split_inputs.split_inputs` builds them for the split: Silver prices joined, HMM
    directions from the locked train scorecard, cluster classes and the overlay from the locked
    policy. Identity = the lock id and file hashes + ``as_of`` (a new night is a new run).
    ``tickers``: only their rows (each ticker decodes alone: the viewer's one-ticker view)."""
    started = time.perf_counter()
    locked_dir = Path(locked_dir)
    lock_info = read_lock(locked_dir)
    frame, report = _decode(settings, locked_dir, lock_info, as_of, tickers)
    rows, price_source = silver_prices(settings, frame.lazy())
    frame = rows.sort("ticker", "trade_date").collect()
    identity = {"lock_id": lock_info["lock_id"], "files": lock_info["files"],
                "as_of": as_of.isoformat() if as_of else report["last_trade_date"],
                "source": source_type, "overlay": bool(overlay), "split_id": lock_info["split_id"],
                "price_source": price_source, "rows": frame.height}  # fmt: skip
    if tickers is not None:
        identity["tickers"] = sorted(tickers)
    inputs = BacktestInputs(rows=frame, input_type=source_type, tag=tag, identity=identity,
                            input_file=str(locked_dir), in_sample=lock_info.get("in_sample"),
                            extra={"locked": report}, load_sec=time.perf_counter() - started)
    if source_type == "hmm":
        inputs.state_col = "hmm_state_filtered"
        inputs.scorecard = pl.read_csv(locked_dir / lock_info["direction_file"])
        inputs.scorecard_source = "train_scorecard"
        identity["direction_file"] = lock_info["direction_file"]
    if source_type != "cluster" and not overlay:
        return inputs
    if not lock_info.get("policy_file"):
        raise ValueError(f"{locked_dir}: no cluster policy was locked (the candidate was "
                         "locked without the overlay and is not a cluster source)")
    policy = _read(locked_dir / lock_info["policy_file"])
    identity["policy_file"] = lock_info["policy_file"]
    if source_type == "cluster":
        inputs.cluster_policy = policy
    if overlay:
        inputs.overlay_rows = frame.select("ticker", "trade_date", "cluster_id")
        inputs.overlay_policy = policy
        identity["overlay"] = "locked_cluster_policy"
    return inputs

