"""Locked candidate models (issue #22 items 1–2): a lock copies what re-decodes the bars, and
the locked decode of the lake's current ML dataset reproduces the original research runs'
states and cluster ids on their rows, never changes earlier states when bars are appended, and
feeds the backtest the rows a split backtest trades.

The research runs, the cluster policy and the grid are REAL (``prepare`` → ``hmm_run`` /
``cluster_run`` → ``split_sources`` → ``run_grid``) on a small ML dataset export written where
the lake keeps its exports; a later export with more days plays the nightly append.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest

from mf_pipeline.lib.candidates import locked
from mf_pipeline.lib.research import clustering as cl
from mf_pipeline.lib.research import hmm as hm
from mf_pipeline.lib.research.features import ScalerModel, fit_scaler
from mf_pipeline.lib.settings import load_settings
from mf_pipeline.lib.steps.dataset_step import export_root

SPLIT = "wf2020-06-30"
HMM_FEATURES = ("f1", "f2")
CLUSTER_FEATURES = ("f1", "f2", "f3")
LOCK_DAYS = 260
APPENDED_DAYS = 25
HMM = hm.HmmConfig(n_components=2, n_iter=20, fit_max_rows=None, init_sample_rows=1000)


def _days(n: int) -> list[dt.date]:
    days = (dt.date(2020, 1, 1) + dt.timedelta(i) for i in range(2 * n))
    return [d for d in days if d.weekday() < 5][:n]


def _dataset(n_days: int) -> pl.DataFrame:
    """Three regime-switching tickers, one (LATE) listed 10 days before the lock date (too
    short for the HMM run); f3 (cluster-only) is missing on some rows, f1 on one test row.
    Rows depend on the row index only, so a longer dataset extends a shorter one."""
    days = _days(n_days)
    parts = []
    for k, ticker in enumerate(("AAA.US", "BBB.US", "CCC.US", "LATE.US")):
        rng = np.random.default_rng(k)
        n_all = LOCK_DAYS + APPENDED_DAYS
        state = ((np.arange(n_all) + 7 * k) // 15) % 2
        f1 = rng.normal(state * 2.5, 0.6)
        f2 = rng.normal(-state * 2.0, 0.6)
        f3 = rng.normal(state, 1.0)
        f3[(np.arange(n_all) + k) % 17 == 3] = np.nan
        if ticker == "AAA.US":
            f1[200] = np.nan
        close = 20 * np.exp(np.cumsum(rng.normal((state - 0.5) * 0.004, 0.01)))
        frame = pl.DataFrame({
            "ticker": ticker, "exchange": "US", "trade_date": _days(n_all),
            "flow_state_code": pl.Series(state * 2, dtype=pl.Int32),
            "f1": f1, "f2": f2, "f3": f3, "close": close,
            "volume": rng.integers(200_000, 400_000, n_all).astype(np.float64),
            "atr_pct_14": np.abs(rng.normal(0.02, 0.003, n_all)),
        }, nan_to_null=False)  # fmt: skip
        if ticker == "LATE.US":
            frame = frame.slice(LOCK_DAYS - 10)
        parts.append(frame.filter(pl.col("trade_date") <= days[-1]))
    return pl.concat(parts)


def _export(settings, name: str, frame: pl.DataFrame, stamp: str) -> Path:
    folder = export_root(settings) / name
    folder.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(folder / "dataset.parquet")
    (folder / "metadata.json").write_text(json.dumps({"generated_ts": stamp}))
    return folder / "dataset.parquet"


def _runs(settings, scaling_scope: str = "global") -> tuple[Path, Path]:
    from mf_pipeline.lib.steps.research.cluster import cluster_run
    from mf_pipeline.lib.steps.research.hmm import hmm_run
    from mf_pipeline.lib.steps.research.options import PrepOptions
    from mf_pipeline.lib.steps.research.prepare import prepare

    prep = prepare(settings, None, SPLIT, PrepOptions(features=HMM_FEATURES, kind="hmm",
                                                      scaling_scope=scaling_scope))
    hmm_dir = hmm_run(settings, prep, HMM, min_len=30).output_dir
    prep = prepare(settings, None, SPLIT, PrepOptions(features=CLUSTER_FEATURES))
    config = cl.ClusterConfig(n_clusters=3, kmeans_n_init=2)
    return hmm_dir, cluster_run(settings, prep, "kmeans", config).output_dir


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """The export at lock time, both research runs of the split, a real overlay grid on them
    (hmm + cluster sources) and the lock of its hmm candidate."""
    from mf_pipeline.lib.grids.combos import GridDimensions
    from mf_pipeline.lib.grids.inputs import split_sources
    from mf_pipeline.lib.grids.run import GridOptions, run_grid

    root = tmp_path_factory.mktemp("locked")
    with pytest.MonkeyPatch.context() as patch:
        for name in ("DATA_ROOT", "ARTIFACTS_ROOT", "LOGS_ROOT", "RAW_ROOT"):
            patch.setenv(f"MF_PIPELINE_PATHS__{name}", str(root / name.lower()))
        patch.delenv("MF_PIPELINE_SETTINGS_FILE", raising=False)
        settings = load_settings()
        out = SimpleNamespace(root=root, settings=settings)
        out.first = _export(settings, "ml-1", _dataset(LOCK_DAYS), "2026-01-01T00:00:00+00:00")
        out.hmm_dir, out.cluster_dir = _runs(settings)
        sources = split_sources(settings, SPLIT, ["hmm", "cluster"], str(out.hmm_dir),
                                str(out.cluster_dir), None, policy_filter_mode="allow_only",
                                overlay=True)  # fmt: skip
        dims = GridDimensions(hold_bars=(3,), fee_bps_per_side=(0.0,), exit_mode=("horizon",))
        out.grid = run_grid(settings, sources, dims, GridOptions(tag="t"),
                            folder=root / "grid").output_dir  # fmt: skip
        out.test_end = sources[0].inputs.identity["test_end"]
        out.locked = root / "pack" / "locked" / "CANDIDATE_EXEC"
        out.description = locked.lock(settings, out.locked, out.grid, "hmm", overlay=True)
        yield out


@pytest.fixture
def lake_env(lake, monkeypatch):
    for name in ("DATA_ROOT", "ARTIFACTS_ROOT", "LOGS_ROOT", "RAW_ROOT"):
        monkeypatch.setenv(f"MF_PIPELINE_PATHS__{name}", str(lake.root / name.lower()))
    return lake


def _appended(lake) -> Path:
    """The nightly append: a newer export with APPENDED_DAYS more days (idempotent)."""
    return _export(lake.settings, "ml-2", _dataset(LOCK_DAYS + APPENDED_DAYS),
                   "2026-01-02T00:00:00+00:00")


def _drop_appended(lake) -> None:
    shutil.rmtree(lake.first.parent.parent / "ml-2", ignore_errors=True)


def _keys(frame: pl.DataFrame) -> list[tuple]:
    return frame.select("ticker", "trade_date").rows()


# ------------------------------------------------------------------------------- the lock


def test_the_lock_copies_every_file_with_its_hash_and_records_the_windows(lake_env):
    d = lake_env.description
    assert d["source_type"] == "hmm" and d["overlay"] is True and d["split_id"] == SPLIT
    for name in ("hmm/hmm_model_meta.json", "hmm/scaler_params.json", "hmm/feature_list.json",
                 "hmm/train_state_scorecard.csv", "hmm/universe.json",
                 "cluster/cluster_model.json", "cluster/scaler_params.json",
                 "cluster/feature_list.json", locked.POLICY_COPY):
        assert locked._sha256(lake_env.locked / name) == d["files"][name]
    assert json.loads((lake_env.locked / locked.LOCK_FILE).read_text()) == d
    split = json.loads((lake_env.hmm_dir / "split_summary.json").read_text())
    assert d["hmm"]["decode_from"] == split["test_start"] and d["hmm"]["skip_dates"] is None
    assert d["lake_last_date"] == str(_days(LOCK_DAYS)[-1])
    # LATE.US had 10 test rows (< min_len 30): not decoded by the run, not in the universe
    universe = json.loads((lake_env.locked / "hmm/universe.json").read_text())["tickers"]
    assert universe == ["AAA.US", "BBB.US", "CCC.US"]
    # the grid's policy file, byte for byte
    grid = json.loads((lake_env.grid / "grid_summary.json").read_text())
    source = next(s for s in grid["sources"] if s["source_type"] == "hmm")
    assert Path(source["identity"]["policy_file"]).read_bytes() == \
        (lake_env.locked / locked.POLICY_COPY).read_bytes()  # fmt: skip


def test_relocking_converges_and_a_tampered_file_is_refused(lake_env, tmp_path):
    again = locked.lock(lake_env.settings, tmp_path / "L", lake_env.grid, "hmm", overlay=True)
    assert again["lock_id"] == lake_env.description["lock_id"]
    meta = tmp_path / "L" / "hmm" / "hmm_model_meta.json"
    meta.write_text(meta.read_text().replace("0", "1", 1))
    with pytest.raises(ValueError, match="hmm/hmm_model_meta.json"):
        locked.decode_locked(lake_env.settings, tmp_path / "L")


def test_a_file_grid_candidate_is_refused_naming_the_grid(lake_env, tmp_path):
    grid = tmp_path / "grid-file"
    grid.mkdir()
    (grid / "grid_summary.json").write_text(json.dumps({"sources": [
        {"source_type": "hmm", "identity": {"file": "x.parquet", "sha256": "ab"}}]}))
    with pytest.raises(ValueError, match=f"grid {grid}.*only split grids"):
        locked.lock(lake_env.settings, tmp_path / "L", grid, "hmm", overlay=False)


# ---------------------------------------------------------------------------- the decode


def test_locked_decode_reproduces_the_runs_states_and_cluster_ids_exactly(lake_env):
    _drop_appended(lake_env)
    got, report = locked.decode_with_report(lake_env.settings, lake_env.locked)
    decoded = pl.read_parquet(lake_env.hmm_dir / "decoded_rows.parquet")
    clustered = pl.read_parquet(lake_env.cluster_dir / "clustered_dataset_full.parquet")
    # the split backtest's rows: both runs labelled them
    common = decoded.join(clustered.select("ticker", "trade_date", "cluster_id"),
                          on=["ticker", "trade_date"]).sort("ticker", "trade_date")
    assert _keys(got) == _keys(common)
    # the run's row columns (atr_pct_14 is not an HMM feature here: the run did not keep it)
    assert lake_env.description["hmm"]["columns"] == ["exchange", "close", "volume",
                                                      "flow_state_code"]
    for col in ("hmm_state_filtered", "hmm_prob_filtered_max", "cluster_id",
                *lake_env.description["hmm"]["columns"]):
        assert got[col].to_list() == common[col].to_list(), col
    assert got.schema["hmm_state_filtered"] == pl.Int16
    # the filter starts at the test start, after the embargo
    assert got["trade_date"].min() == dt.date.fromisoformat(
        lake_env.description["hmm"]["decode_from"])  # fmt: skip
    assert report["tickers_outside_universe"] == ["LATE.US"]
    assert "LATE.US" not in got["ticker"].to_list()
    # f1 missing on one AAA row: dropped, the sequence continues over it as in the run
    assert (got["hmm_state_filtered"] != common["hmm_state_filtered"]).sum() == 0


def test_appending_bars_never_changes_earlier_states(lake_env):
    _drop_appended(lake_env)
    before = locked.decode_locked(lake_env.settings, lake_env.locked)
    _appended(lake_env)
    try:
        after, report = locked.decode_with_report(lake_env.settings, lake_env.locked)
    finally:
        _drop_appended(lake_env)
    assert report["dataset_path"].endswith("ml-2/dataset.parquet")  # the newest export
    lock_end = _days(LOCK_DAYS)[-1]
    new = after.filter(pl.col("trade_date") > lock_end)
    assert new["trade_date"].n_unique() == APPENDED_DAYS and new["ticker"].n_unique() == 3
    old = after.filter(pl.col("trade_date") <= lock_end)
    assert old.equals(before)
    # as_of cuts the same rows and states (the states of bars <= t read nothing after t)
    cut = _days(LOCK_DAYS)[-40]
    assert locked.decode_locked(lake_env.settings, lake_env.locked, cut).equals(
        before.filter(pl.col("trade_date") <= cut))  # fmt: skip


def test_an_as_of_before_the_decode_window_is_a_clear_error(lake_env):
    with pytest.raises(ValueError, match="no dataset row .* decode window"):
        locked.decode_locked(lake_env.settings, lake_env.locked, dt.date(2020, 7, 1))


def test_the_locked_folder_works_without_the_research_runs(lake_env, tmp_path):
    moved = {p: tmp_path / p.name for p in (lake_env.hmm_dir, lake_env.cluster_dir)}
    expected = locked.decode_locked(lake_env.settings, lake_env.locked)
    for src, dst in moved.items():
        src.rename(dst)
    try:
        again = locked.decode_locked(lake_env.settings, lake_env.locked)
    finally:
        for src, dst in moved.items():
            dst.rename(src)
    assert again.equals(expected)


# -------------------------------------------------------------------- the backtest inputs


def test_locked_inputs_equal_the_split_inputs_on_the_lock_window(lake_env):
    from mf_pipeline.lib.steps.backtest.split_inputs import split_inputs

    _drop_appended(lake_env)
    end = _days(LOCK_DAYS)[-1] if lake_env.test_end is None else \
        dt.date.fromisoformat(lake_env.test_end)  # fmt: skip
    ours = locked.locked_inputs(lake_env.settings, lake_env.locked, "hmm", end, True, "L")
    theirs = split_inputs(lake_env.settings, SPLIT, "hmm", lake_env.hmm_dir,
                          lake_env.cluster_dir, overlay=True, test_end=end)  # fmt: skip
    cols = [c for c in theirs.rows.columns if c != "fwd_ret_10"]
    assert sorted(ours.rows.columns) == sorted(cols)
    assert ours.rows.select(cols).equals(theirs.rows.select(cols))
    assert ours.scorecard.equals(theirs.scorecard)
    assert ours.state_col == theirs.state_col == "hmm_state_filtered"
    assert ours.overlay_policy["per_state"] == theirs.overlay_policy["per_state"]
    assert ours.overlay_rows.equals(theirs.overlay_rows)
    assert ours.identity["lock_id"] == lake_env.description["lock_id"]
    assert ours.identity["as_of"] == end.isoformat()
    # the same trades
    from mf_pipeline.lib.steps.backtest.options import backtest_options
    from mf_pipeline.lib.steps.backtest.run import backtest_run

    options = backtest_options(lake_env.settings, hold_bars=3)
    a = backtest_run(lake_env.settings, ours, options)
    b = backtest_run(lake_env.settings, theirs, options)
    assert a.trades.height > 0
    keep = ["ticker", "entry_date", "exit_date", "net_return"]
    assert a.trades.select(keep).equals(b.trades.select(keep))


def test_a_cluster_candidate_needs_its_locked_policy(lake_env, tmp_path):
    from mf_pipeline.lib.steps.backtest.split_inputs import split_inputs

    path = tmp_path / "C"
    locked.lock(lake_env.settings, path, lake_env.grid, "cluster", overlay=False)
    ours = locked.locked_inputs(lake_env.settings, path, "cluster", None, False, "C")
    theirs = split_inputs(lake_env.settings, SPLIT, "cluster", lake_env.hmm_dir,
                          lake_env.cluster_dir, test_end=_days(LOCK_DAYS)[-1])  # fmt: skip
    assert ours.cluster_policy["per_state"] == theirs.cluster_policy["per_state"]
    assert ours.overlay_policy is None
    assert ours.rows["cluster_id"].to_list() == theirs.rows["cluster_id"].to_list()


# ----------------------------------------------------------- per-ticker scaling and models


def test_per_ticker_scaling_reproduces_the_run_and_reports_unseen_tickers(lake_env, tmp_path):
    hmm_dir, cluster_dir = _runs(lake_env.settings, scaling_scope="per_ticker")
    grid = tmp_path / "grid"
    grid.mkdir()
    (grid / "grid_summary.json").write_text(json.dumps({"sources": [
        {"source_type": "hmm", "in_sample": False, "identity": {
            "split_id": SPLIT, "hmm_run_dir": str(hmm_dir), "cluster_run_dir": str(cluster_dir),
            "test_end": None}}]}))  # fmt: skip
    locked.lock(lake_env.settings, tmp_path / "P", grid, "hmm", overlay=False)
    assert (tmp_path / "P" / "hmm" / "scaler_params_per_ticker.parquet").is_file()
    got, report = locked.decode_with_report(lake_env.settings, tmp_path / "P")
    decoded = pl.read_parquet(hmm_dir / "decoded_rows.parquet")
    joined = got.join(decoded, on=["ticker", "trade_date"], suffix="_run")
    assert joined.height == got.height > 0
    assert (joined["hmm_state_filtered"] == joined["hmm_state_filtered_run"]).all()
    assert (joined["hmm_prob_filtered_max"] == joined["hmm_prob_filtered_max_run"]).all()
    assert report["tickers_outside_universe"] == ["LATE.US"]


@pytest.mark.parametrize("kind", ["diag", "full", "tied", "spherical"])
def test_hmm_params_round_trip_through_their_json_payload(kind):
    rng = np.random.default_rng(3)
    X = np.concatenate([rng.normal(0, 1, (150, 2)), rng.normal(3, 0.5, (150, 2))])
    fit = hm.fit_hmm(X, np.array([0, 300]), hm.HmmConfig(n_components=2, covariance_type=kind,
                                                         n_iter=10, init_sample_rows=300))
    back = hm.HmmParams.from_payload(json.loads(json.dumps(fit.params.payload())))
    assert np.array_equal(hm.log_emissions(back, X), hm.log_emissions(fit.params, X))
    assert np.array_equal(back.transmat, fit.params.transmat)


def test_a_full_covariance_payload_without_covars_is_refused():
    payload = {"covariance_type": "full", "startprob": [1.0], "transmat": [[1.0]],
               "means": [[0.0]], "variances": [[1.0]]}
    with pytest.raises(ValueError, match="full covariances were not saved"):
        hm.HmmParams.from_payload(payload)


def test_scaler_round_trips_through_its_payload():
    frame = pl.DataFrame({"ticker": ["A", "A", "B", "B"], "f": [1.0, 3.0, 10.0, 20.0]})
    for scope in ("global", "per_ticker"):
        model = fit_scaler(frame, ("f",), "robust", scope)
        back = ScalerModel.from_payload(json.loads(json.dumps(model.payload())),
                                        model.per_ticker)  # fmt: skip
        assert back == model if scope == "global" else back.per_ticker.equals(model.per_ticker)
        assert np.array_equal(back.center, model.center)


@pytest.mark.parametrize(("method", "extra"), [
    ("kmeans", {}), ("gmm", {"gmm_covariance_type": "diag"}),
    ("gmm", {"gmm_covariance_type": "full"}), ("gmm", {"gmm_covariance_type": "spherical"}),
    ("hdbscan", {"hdbscan_fit_sample_max": 200}),
])  # fmt: skip
def test_saved_cluster_models_label_rows_as_the_run_did(method, extra, tmp_path):
    from mf_pipeline.lib.steps.research.cluster import read_cluster_model, write_cluster_model

    rng = np.random.default_rng(5)
    X = np.concatenate([rng.normal(c, 0.7, (200, 3)) for c in (0.0, 3.0, -3.0)])
    new = rng.normal(0, 2.5, (300, 3))
    result = cl.run_clustering(X, method, cl.ClusterConfig(n_clusters=3, kmeans_n_init=2,
                                                           **extra), {"predict": X, "new": new})
    write_cluster_model(result.fitted, ("a", "b", "c"), tmp_path, load_settings())
    model, payload = read_cluster_model(tmp_path)
    assert payload["feature_list"] == ["a", "b", "c"]
    for name, rows in (("predict", X), ("new", new)):
        assert np.array_equal(cl.predict_clusters(model, rows), result.labels[name]), name


# ------------------------------------------------------------------- on a real demo lake


@pytest.fixture(scope="module")
def demo_lake(tmp_path_factory):
    """``mf demo`` (its grid: the ``full`` split, hmm + cluster + flow sources), the lock of
    its hmm candidate with the overlay, then one appended bar per raw file and the lake's
    append path up to the ML dataset (the nightly update). Yields the decode before/after."""
    from typer.testing import CliRunner

    from mf_pipeline.cli import app
    from mf_pipeline.lib.sample import generate_universe
    from mf_pipeline.lib.sample_append import append_one_bar
    from mf_pipeline_tests.e2e.demo_cli import point_at

    root = tmp_path_factory.mktemp("locked_demo")
    raw = root / "data" / "sample_raw"
    generate_universe(raw, n_tickers=16, years=5, seed=7)  # small: the demo's steps, faster
    with pytest.MonkeyPatch.context() as patch:
        point_at(root, patch)
        patch.setenv("MF_PIPELINE_PATHS__RAW_ROOT", str(raw))
        assert CliRunner().invoke(app, ["demo"], catch_exceptions=False).exit_code == 0
        settings = load_settings()
        grid = next((settings.artifacts_root / "backtest_sensitivity").glob("grid-*"))
        folder = root / "locked"
        description = locked.lock(settings, folder, grid, "hmm", overlay=True)
        before, report = locked.decode_with_report(settings, folder)
        assert append_one_bar(raw) > 0
        result = CliRunner().invoke(app, ["run", "--until", "ml_dataset"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        after, later = locked.decode_with_report(load_settings(), folder)
        assert later["dataset_path"] != report["dataset_path"]
        yield SimpleNamespace(description=description, before=before, after=after,
                              exports=(report["dataset_path"], later["dataset_path"]))


def test_demo_lake_locked_decode_equals_the_demo_runs_and_is_causal_under_the_append(demo_lake):
    d = demo_lake.description
    decoded = pl.read_parquet(Path(d["hmm_run_dir"]) / "decoded_rows.parquet")
    clustered = pl.read_parquet(Path(d["cluster_run_dir"]) / "clustered_dataset_full.parquet")
    common = decoded.join(clustered.select("ticker", "trade_date", "cluster_id"),
                          on=["ticker", "trade_date"]).sort("ticker", "trade_date")
    before = demo_lake.before
    assert _keys(before) == _keys(common) and before.height > 10_000
    for col in ("hmm_state_filtered", "hmm_prob_filtered_max", "cluster_id", *d["hmm"]["columns"]):
        assert before[col].equals(common[col]), col
    # after the nightly append: new bars; a ticker whose earlier lake rows did not change keeps
    # every earlier state bit for bit (a raw file whose last line was not its newest bar gets
    # the new bar inside its history: a revision, whose later rows may legitimately change)
    lock_end = before["trade_date"].max()
    after = demo_lake.after
    assert after.filter(pl.col("trade_date") > lock_end).height > 0
    first, newest = demo_lake.exports
    old = pl.read_parquet(first)
    new = pl.read_parquet(newest).filter(pl.col("trade_date") <= lock_end)
    changed = old.join(new, on=old.columns, how="anti", nulls_equal=True)["ticker"].unique()
    assert changed.len() < before["ticker"].n_unique()
    kept = after.filter(~pl.col("ticker").is_in(changed.implode()),
                        pl.col("trade_date") <= lock_end)
    assert kept.height > 10_000
    assert kept.equals(before.filter(~pl.col("ticker").is_in(changed.implode())))
